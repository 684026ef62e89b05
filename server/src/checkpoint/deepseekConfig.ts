/**
 * DeepSeek V2 / V3 config.json -> the parts of a ModelSpec the architecture table cannot say: multi-head
 * latent attention, its YaRN rope and softmax scale, the router (sigmoid or softmax scores, correction bias,
 * group limit, scaling factor), shared experts and the dense first layers. Keys and defaults are
 * transformers' own (configuration_deepseek_v3.py, configuration_deepseek_v2.py); Kimi-K2 and Moonlight
 * declare DeepseekV3ForCausalLM and are read by the same rules. GLM-4.5 (`glmSpec`) shares V3's router, shared
 * experts and dense first layers with grouped-query attention of its own.
 */

import { quoteValue } from '../errors';
import { resolveTensorNames, type ArchitectureTable } from './architectures';
import type { ConfigReader } from './config';
import type { LayerSpec, MlaSpec, ModelSpec, MoeSpec, RopeScalingSpec, RoutingSpec } from './modelSpec';
import { yarnMscale, yarnRope } from './yarnRope';

type Version = 2 | 3;

function versionOf(table: ArchitectureTable): Version {
  return table.architecture === 'DeepseekV3ForCausalLM' ? 3 : 2;
}

/** HF: layer i has experts iff i >= first_k_dense_replace (V3 default 3, V2 default 0). */
export function deepseekMoeLayers(read: ConfigReader, numLayers: number): (layer: number) => boolean {
  const declares = (architecture: string, modelType: string) => read.raw('model_type') === modelType || (Array.isArray(read.raw('architectures')) && (read.raw('architectures') as unknown[]).includes(architecture));
  // GLM-4.5's default is 1 (configuration_glm4_moe.py).
  const fallback = declares('DeepseekV3ForCausalLM', 'deepseek_v3') ? 3 : declares('Glm4MoeForCausalLM', 'glm4_moe') ? 1 : 0;
  const firstMoe = read.has('first_k_dense_replace') ? read.raw('first_k_dense_replace') : fallback;
  if (typeof firstMoe !== 'number' || !Number.isSafeInteger(firstMoe) || firstMoe < 0 || firstMoe > numLayers) {
    read.fail(`"first_k_dense_replace" should be a layer count from 0 to num_hidden_layers (${numLayers}), got ${quoteValue(firstMoe)}.`);
  }
  // transformers builds an MoE block for every layer from first_k_dense_replace on; a frequency other than
  // 1 (DeepSeek's own code reads it) would make transformers and the checkpoint disagree, so it is refused.
  const frequency = read.raw('moe_layer_freq');
  if (frequency !== undefined && frequency !== null && frequency !== 1) read.fail(`"moe_layer_freq" is ${quoteValue(frequency)}; only 1 is supported (transformers ignores it).`);
  return (layer) => layer >= (firstMoe as number);
}

export function deepseekSpec(base: ModelSpec, table: ArchitectureTable, read: ConfigReader): ModelSpec {
  const version = versionOf(table);
  const { numHeads, numKvHeads } = base.attention;
  if (numKvHeads !== numHeads) read.fail(`num_key_value_heads (${numKvHeads}) differs from num_attention_heads (${numHeads}); MLA has one key and value per query head.`);
  const qLoraRank = read.has('q_lora_rank') ? read.positiveInt('q_lora_rank') : undefined;
  const mla: MlaSpec = {
    ...(qLoraRank !== undefined && { qLoraRank }),
    kvLoraRank: read.positiveInt('kv_lora_rank', 512),
    nopeHeadDim: read.positiveInt('qk_nope_head_dim', 128),
    ropeHeadDim: read.positiveInt('qk_rope_head_dim', 64),
    vHeadDim: read.positiveInt('v_head_dim', 128),
    // V2 rotates (re, im) pairs as complex numbers; V3 de-interleaves them when rope_interleave (default true).
    interleaved: version === 2 ? true : read.boolean('rope_interleave', true),
    latentNormEps: 1e-6,
  };
  if (mla.ropeHeadDim % 2 !== 0) read.fail(`"qk_rope_head_dim" ${mla.ropeHeadDim} is odd; rotary embeddings need an even size.`);
  const qkHeadDim = mla.nopeHeadDim + mla.ropeHeadDim;
  const yarn = yarnParameters(read);
  let scale = 1 / Math.sqrt(qkHeadDim);
  // DeepseekV3Attention: the softmax scale is multiplied by mscale² when rope_scaling sets mscale_all_dim;
  // DeepseekV2Attention keeps qk_head_dim^-0.5.
  if (version === 3 && yarn?.mscaleAllDim) scale *= yarnMscale(yarn.factor, yarn.mscaleAllDim) ** 2;
  const ropeScaling: RopeScalingSpec | undefined = yarn && yarnRope(mla.ropeHeadDim, base.attention.ropeTheta, yarn);

  const routing = routingOf(version, read, base);
  const sharedCount = version === 3 ? read.positiveInt('n_shared_experts', 1) : read.positiveInt('n_shared_experts', 2);
  const layers: LayerSpec[] = base.layers.map((layer) => {
    if (layer.kind === 'dense') return layer;
    const moe: MoeSpec = {
      ...layer.moe,
      // DeepseekV2Moe has no renormalisation; DeepseekV3TopkRouter reads norm_topk_prob (default true).
      normTopKProb: version === 3 ? layer.moe.normTopKProb : false,
      sharedExpert: { intermediateSize: layer.moe.expert.intermediateSize * sharedCount, gated: false },
      routing,
    };
    if (routing.groups && moe.numExperts % routing.groups.count !== 0) {
      read.fail(`n_routed_experts (${moe.numExperts}) is not a multiple of "n_group" (${routing.groups.count}).`);
    }
    return { ...layer, moe };
  });
  const isMoeLayer = (i: number) => layers[i]?.kind === 'moe';
  return {
    ...base,
    attention: { ...base.attention, headDim: mla.ropeHeadDim, scale, mla, ...(ropeScaling && { ropeScaling }) },
    layers,
    tensors: resolveTensorNames(table, { tieWordEmbeddings: base.tieWordEmbeddings, qkvBias: false, isMoeLayer, qLora: qLoraRank !== undefined }),
  };
}

function routingOf(version: Version, read: ConfigReader, base: ModelSpec): RoutingSpec {
  const first = base.layers.find((layer) => layer.kind === 'moe');
  const numExperts = first?.kind === 'moe' ? first.moe.numExperts : 1;
  const topK = first?.kind === 'moe' ? first.moe.topK : 1;
  const scoringFunc = read.raw('scoring_func');
  if (version === 3) {
    // DeepseekV3TopkRouter always applies the correction bias and the group limit (topk_method is "noaux_tc").
    if (scoringFunc !== undefined && scoringFunc !== null && scoringFunc !== 'sigmoid') read.fail(`"scoring_func" is ${quoteValue(scoringFunc)}; DeepseekV3ForCausalLM scores with "sigmoid".`);
    const topkMethod = read.raw('topk_method');
    if (topkMethod !== undefined && topkMethod !== null && topkMethod !== 'noaux_tc') read.fail(`"topk_method" is ${quoteValue(topkMethod)}; DeepseekV3ForCausalLM routes with "noaux_tc".`);
    const groups = groupLimit(read, numExperts, topK, 8, 4, 'topTwoSum');
    return { scoring: 'sigmoid', correctionBias: true, groups, scalingFactor: read.positiveNumber('routed_scaling_factor', 2.5) };
  }
  if (scoringFunc !== undefined && scoringFunc !== null && scoringFunc !== 'softmax') read.fail(`"scoring_func" is ${quoteValue(scoringFunc)}; DeepseekV2ForCausalLM scores with "softmax".`);
  const method = read.raw('topk_method') ?? 'greedy';
  if (method !== 'greedy' && method !== 'group_limited_greedy') read.fail(`"topk_method" is ${quoteValue(method)}; DeepseekV2ForCausalLM supports "greedy" and "group_limited_greedy".`);
  const groups = method === 'group_limited_greedy' ? groupLimit(read, numExperts, topK, undefined, undefined, 'max') : undefined;
  return { scoring: 'softmax', correctionBias: false, ...(groups && { groups }), scalingFactor: read.positiveNumber('routed_scaling_factor', 1) };
}

/**
 * GLM-4.5 (modeling_glm4_moe.py): grouped-query attention (head_dim from the config, q/k/v biases when
 * `attention_bias`, per-head q/k RMSNorm when `use_qk_norm`, the first `partial_rotary_factor` (default 0.5)
 * of each head rotating), and DeepSeek V3's router: sigmoid, correction bias, group limit (n_group default 1),
 * routed_scaling_factor (default 1.0); shared experts of n_shared_experts × moe_intermediate_size.
 */
export function glmSpec(base: ModelSpec, table: ArchitectureTable, read: ConfigReader): ModelSpec {
  const qkvBias = read.boolean('attention_bias', false);
  const qkNorm = read.boolean('use_qk_norm', false);
  const nested = read.raw('rope_parameters');
  const nestedFactor = nested && typeof nested === 'object' ? (nested as Record<string, unknown>).partial_rotary_factor : undefined;
  const factor = nestedFactor ?? (read.has('partial_rotary_factor') ? read.raw('partial_rotary_factor') : 0.5);
  if (typeof factor !== 'number' || !(factor > 0 && factor <= 1)) read.fail(`"partial_rotary_factor" should be a number in (0, 1], got ${quoteValue(factor)}.`);
  const headDim = base.attention.headDim;
  const rotaryDim = Math.floor(headDim * (factor as number));
  if (rotaryDim % 2 !== 0 || rotaryDim === 0) read.fail(`head_dim ${headDim} × partial_rotary_factor ${factor} = ${rotaryDim} rotary dimensions; RoPE needs an even, positive number.`);
  const first = base.layers.find((layer) => layer.kind === 'moe');
  const numExperts = first?.kind === 'moe' ? first.moe.numExperts : 1;
  const topK = first?.kind === 'moe' ? first.moe.topK : 1;
  const routing: RoutingSpec = { scoring: 'sigmoid', correctionBias: true, groups: groupLimit(read, numExperts, topK, 1, 1, 'topTwoSum'), scalingFactor: read.positiveNumber('routed_scaling_factor', 1) };
  const sharedCount = read.positiveInt('n_shared_experts', 1);
  const layers: LayerSpec[] = base.layers.map((layer) => {
    if (layer.kind === 'dense') return layer;
    if (numExperts % routing.groups!.count !== 0) read.fail(`n_routed_experts (${numExperts}) is not a multiple of "n_group" (${routing.groups!.count}).`);
    return { ...layer, moe: { ...layer.moe, sharedExpert: { intermediateSize: layer.moe.expert.intermediateSize * sharedCount, gated: false }, routing } };
  });
  const isMoeLayer = (i: number) => layers[i]?.kind === 'moe';
  return {
    ...base,
    attention: { ...base.attention, qkvBias, qkNorm: qkNorm ? 'perHead' : 'none', ...(rotaryDim !== headDim && { rotaryDim }) },
    layers,
    tensors: resolveTensorNames(table, { tieWordEmbeddings: base.tieWordEmbeddings, qkvBias, isMoeLayer, qkNorm }),
  };
}

function groupLimit(read: ConfigReader, numExperts: number, topK: number, countDefault: number | undefined, selectedDefault: number | undefined, score: 'topTwoSum' | 'max'): RoutingSpec['groups'] {
  const count = read.positiveInt('n_group', countDefault);
  const selected = read.positiveInt('topk_group', selectedDefault);
  if (selected > count) read.fail(`"topk_group" (${selected}) exceeds "n_group" (${count}).`);
  const perGroup = numExperts / count;
  // The V3 group score is the sum of a group's two best experts: torch.topk(2) needs two per group.
  if (score === 'topTwoSum' && Number.isInteger(perGroup) && perGroup < 2) read.fail(`"n_group" (${count}) leaves fewer than 2 experts per group; the group score sums the best two.`);
  if (Number.isInteger(perGroup) && selected * perGroup < topK) read.fail(`"topk_group" (${selected}) groups of ${perGroup} experts hold fewer than num_experts_per_tok (${topK}).`);
  return { count, selected, score };
}

/** rope_scaling (transformers 4.x) or rope_parameters (5.x) of type "yarn"; absent: plain RoPE. */
function yarnParameters(read: ConfigReader): Parameters<typeof yarnRope>[2] | undefined {
  for (const key of ['rope_scaling', 'rope_parameters']) {
    const value = read.raw(key);
    if (value === undefined || value === null) continue;
    const params = value as Record<string, unknown>;
    const type = params.rope_type ?? params.type ?? 'default';
    if (type !== 'yarn') continue;
    const number = (name: string, required: boolean): number | undefined => {
      const v = params[name];
      if (v === undefined || v === null) {
        if (required) read.fail(`"${key}.${name}" is missing; YaRN needs it.`);
        return undefined;
      }
      if (typeof v !== "number" || !Number.isFinite(v) || v < 0) read.fail(`"${key}.${name}" should be a non-negative number, got ${quoteValue(v)}.`);
      return v;
    };
    const truncate = params.truncate;
    if (truncate !== undefined && typeof truncate !== 'boolean') read.fail(`"${key}.truncate" should be true or false, got ${quoteValue(truncate)}.`);
    const originalMax = number('original_max_position_embeddings', false) ?? read.positiveInt('max_position_embeddings');
    const factor = number('factor', false) ?? read.positiveInt('max_position_embeddings') / originalMax;
    return {
      factor,
      originalMaxPositionEmbeddings: originalMax,
      betaFast: number('beta_fast', false),
      betaSlow: number('beta_slow', false),
      mscale: number('mscale', false),
      mscaleAllDim: number('mscale_all_dim', false),
      attentionFactor: number('attention_factor', false),
      ...(truncate !== undefined && { truncate: truncate as boolean }),
    };
  }
  return undefined;
}
