/**
 * config.json -> ModelSpec. Every key the forward pass depends on is read and checked here, once, so
 * a bad config fails at load with the key named, not as a shape error deep in the runtime.
 */

import { ARCHITECTURES, resolveTensorNames, type ArchitectureTable } from './architectures';
import { familyOptions } from './familyConfig';
import { quoteValue } from '../errors';
import { deepseekMoeLayers, deepseekSpec, glmSpec } from './deepseekConfig';
import { CheckpointError } from './errors';
import { SUPPORTED_ARCHITECTURES, type LayerSpec, type ModelSpec, type MoeSpec, type ScalingSpec } from './modelSpec';

type Config = Record<string, unknown>;

/** Names published configs use for a class transformers spells otherwise (microsoft/Phi-3.5-MoE-instruct's remote code). */
const ARCHITECTURE_ALIASES: Record<string, string> = { PhiMoEForCausalLM: 'PhimoeForCausalLM' };

export function findArchitecture(config: Config, file: string): ArchitectureTable {
  const supported = SUPPORTED_ARCHITECTURES.join(', ');
  const declared = config.architectures;
  if (declared !== undefined) {
    if (!Array.isArray(declared) || declared.length === 0 || !declared.every((name) => typeof name === 'string')) {
      throw new CheckpointError('invalidConfig', `${file}: "architectures" should be a list of names, got ${quoteValue(declared)}.`, file);
    }
    // Own properties only: `"constructor"` or `"__proto__"` is in every object through its prototype.
    const known = declared.map((name) => (Object.hasOwn(ARCHITECTURE_ALIASES, name) ? ARCHITECTURE_ALIASES[name] : name)).find((name): name is keyof typeof ARCHITECTURES => Object.hasOwn(ARCHITECTURES, name));
    if (!known) {
      throw new CheckpointError(
        'unsupportedArchitecture',
        `${file}: architecture ${declared.slice(0, 4).map((name) => quoteValue(name).slice(1, -1)).join(', ')} is not supported. MoE Studio supports ${supported}.`,
        file,
      );
    }
    return ARCHITECTURES[known];
  }
  const modelType = config.model_type;
  const byType = Object.values(ARCHITECTURES).find((table) => table.modelType === modelType);
  if (!byType) {
    throw new CheckpointError(
      'unsupportedArchitecture',
      `${file}: neither "architectures" nor a known "model_type" (got ${quoteValue(modelType)}). MoE Studio supports ${supported}.`,
      file,
    );
  }
  return byType;
}

/**
 * Upper bounds on sizes config.json declares, each several times the largest published model's
 * (Qwen3-235B has 94 layers, Qwen3-Next 512 experts, Gemma 262k tokens of vocabulary).
 */
const CONFIG_SIZE_LIMITS: Record<string, number> = {
  num_hidden_layers: 1024,
  num_local_experts: 4096,
  num_experts: 4096,
  num_experts_per_tok: 4096,
  vocab_size: 4_194_304,
  num_attention_heads: 4096,
  num_key_value_heads: 4096,
  decoder_sparse_step: 1024,
};
/** Hidden and intermediate sizes, head_dim: larger than any real matrix side. */
const DEFAULT_SIZE_LIMIT = 1_048_576;

/** Typed, named access to config keys: every failure says which key and what was wrong. */
export class ConfigReader {
  constructor(
    private readonly config: Config,
    private readonly file: string,
  ) {}

  fail(message: string): never {
    throw new CheckpointError('invalidConfig', `${this.file}: ${message}`, this.file);
  }

  has(key: string): boolean {
    return this.config[key] !== undefined && this.config[key] !== null;
  }

  positiveInt(key: string, fallback?: number): number {
    const value = this.has(key) ? this.config[key] : fallback;
    if (value === undefined) this.fail(`"${key}" is missing.`);
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
      this.fail(`"${key}" should be a positive integer, got ${quoteValue(value)}.`);
    }
    // Sizes are allocated for (a layer list, an expert table) before the weights can disagree, so
    // an absurd one must stop here rather than as an out-of-memory abort.
    const limit = Object.hasOwn(CONFIG_SIZE_LIMITS, key) ? CONFIG_SIZE_LIMITS[key] : DEFAULT_SIZE_LIMIT;
    if (value > limit) this.fail(`"${key}" is ${value}, over the limit of ${limit} that any real checkpoint stays under.`);
    return value;
  }

  positiveNumber(key: string, fallback: number): number {
    const value = this.has(key) ? this.config[key] : fallback;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      this.fail(`"${key}" should be a positive number, got ${quoteValue(value)}.`);
    }
    return value;
  }

  boolean(key: string, fallback: boolean): boolean {
    const value = this.has(key) ? this.config[key] : fallback;
    if (typeof value !== 'boolean') this.fail(`"${key}" should be true or false, got ${quoteValue(value)}.`);
    return value;
  }

  intList(key: string): number[] {
    const value = this.has(key) ? this.config[key] : [];
    if (!Array.isArray(value) || !value.every((n) => Number.isSafeInteger(n) && n >= 0)) {
      this.fail(`"${key}" should be a list of layer indices, got ${quoteValue(value)}.`);
    }
    return value as number[];
  }

  raw(key: string): unknown {
    return this.config[key];
  }
}

export function parseModelConfig(config: unknown, file = 'config.json'): ModelSpec {
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw new CheckpointError('invalidConfig', `${file} is not a JSON object.`, file);
  }
  const table = findArchitecture(config as Config, file);
  const read = new ConfigReader(config as Config, file);

  const hiddenSize = read.positiveInt('hidden_size');
  const numHeads = read.positiveInt('num_attention_heads');
  const numKvHeads = read.positiveInt('num_key_value_heads', table.defaults.numKvHeads ?? numHeads);
  if (numHeads % numKvHeads !== 0) {
    read.fail(`num_attention_heads (${numHeads}) is not a multiple of num_key_value_heads (${numKvHeads}).`);
  }
  const headDim = read.has('head_dim') ? read.positiveInt('head_dim') : hiddenSize / numHeads;
  if (!Number.isInteger(headDim)) {
    read.fail(`hidden_size (${hiddenSize}) is not divisible by num_attention_heads (${numHeads}) and "head_dim" is absent.`);
  }
  if (headDim % 2 !== 0) read.fail(`head_dim ${headDim} is odd; rotary embeddings need an even head size.`);

  const activation = read.raw('hidden_act');
  if (activation !== undefined && activation !== 'silu') {
    read.fail(`"hidden_act" is ${quoteValue(activation)}; the experts of ${table.architecture} are SwiGLU ("silu").`);
  }
  if (table.qkvBias === 'attentionBias' && read.boolean('attention_bias', false)) {
    read.fail(`"attention_bias": true is not supported (no published ${table.architecture} checkpoint uses it).`);
  }
  if (read.has('clip_qkv')) read.fail(`"clip_qkv" is not supported; set it to null.`);
  const allBiases = table.qkvBias === 'attentionBiasAll' && read.boolean('attention_bias', table.defaults.attentionBias ?? false);

  const numLayers = read.positiveInt('num_hidden_layers');
  const numExperts = read.positiveInt(table.config.numExperts);
  const topK = read.positiveInt('num_experts_per_tok');
  if (topK > numExperts) read.fail(`num_experts_per_tok (${topK}) exceeds ${table.config.numExperts} (${numExperts}).`);

  const moe: MoeSpec = {
    numExperts,
    topK,
    normTopKProb:
      table.normTopKProb === 'always' ? true : read.boolean('norm_topk_prob', table.normTopKProb.configDefault),
    expert: { intermediateSize: read.positiveInt(table.config.expertIntermediateSize) },
    ...(table.config.sharedExpertIntermediateSize && {
      sharedExpert: { intermediateSize: read.positiveInt(table.config.sharedExpertIntermediateSize), gated: true },
    }),
  };
  const family = familyOptions(table, read, { numLayers, headDim, hiddenSize, intermediateSize: moe.expert.intermediateSize, topK });
  Object.assign(moe, family.moe);
  const isMoeLayer = moeLayerSchedule(table, read, numLayers);
  const expertsPerLayer = perLayerExpertCounts(read, numLayers, isMoeLayer, numExperts, topK, table.config.numExperts);
  const layers: LayerSpec[] = [];
  for (let index = 0; index < numLayers; index++) {
    layers.push(
      isMoeLayer(index)
        ? { index, kind: 'moe', moe: expertsPerLayer ? { ...moe, numExperts: expertsPerLayer[index]! } : moe }
        : { index, kind: 'dense', mlp: { intermediateSize: read.positiveInt('intermediate_size') } },
    );
  }

  const tieWordEmbeddings = read.boolean('tie_word_embeddings', false);
  const qkvBias = table.qkvBias === 'always' || allBiases;
  const granite = table.config.graniteScaling ? graniteScaling(read) : undefined;
  const spec: ModelSpec = {
    architecture: table.architecture,
    vocabSize: read.positiveInt('vocab_size'),
    hiddenSize,
    rmsNormEps: read.positiveNumber('rms_norm_eps', table.defaults.rmsNormEps),
    tieWordEmbeddings,
    attention: { numHeads, numKvHeads, headDim, qkvBias, qkNorm: table.qkNorm, ropeTheta: ropeTheta(table, read), ...(granite && { scale: granite.attentionScale }), ...(allBiases && { oBias: true }), ...family.attention },
    ...(granite && { scaling: granite.scaling }),
    ...(family.layerNorm && { layerNorm: true }),
    ...(family.lmHeadBias && { lmHeadBias: true }),
    ...(family.mxfp4 && { expertEncoding: 'mxfp4' as const }),
    layers,
    tensors: resolveTensorNames(table, { tieWordEmbeddings, qkvBias, oBias: allBiases, lmHeadBias: family.lmHeadBias && !tieWordEmbeddings, mxfp4: family.mxfp4, isMoeLayer }),
  };
  if (table.family === 'deepseek') return deepseekSpec(spec, table, read);
  return table.family === 'glm' ? glmSpec(spec, table, read) : spec;
}

/**
 * Expert counts that differ per layer, as MoE Studio's export records them (`moe_studio.num_experts_per_layer`,
 * see export/exportConfig.ts): one entry per decoder layer, null for dense ones. Absent for every published
 * checkpoint, where the one count in the config holds for every layer.
 */
function perLayerExpertCounts(read: ConfigReader, numLayers: number, isMoeLayer: (layer: number) => boolean, maxExperts: number, topK: number, numExpertsKey: string): (number | null)[] | undefined {
  const block = read.raw('moe_studio');
  const counts = block && typeof block === 'object' ? (block as Record<string, unknown>).num_experts_per_layer : undefined;
  if (counts === undefined || counts === null) return undefined;
  const where = '"moe_studio.num_experts_per_layer"';
  if (!Array.isArray(counts) || counts.length !== numLayers) read.fail(`${where} should list one entry per layer (${numLayers}), got ${quoteValue(counts)}.`);
  counts.forEach((count, layer) => {
    if (!isMoeLayer(layer)) {
      if (count !== null) read.fail(`${where}[${layer}] should be null: layer ${layer} is dense.`);
    } else if (!Number.isSafeInteger(count) || count < topK || count > maxExperts) {
      read.fail(`${where}[${layer}] should be an expert count from num_experts_per_tok (${topK}) to ${numExpertsKey} (${maxExperts}), got ${quoteValue(count)}.`);
    }
  });
  return counts as (number | null)[];
}

/**
 * Granite MoE (configuration_granitemoe.py, defaults 1.0 each): `embedding_multiplier` scales the embeddings,
 * `attention_multiplier` is the attention's softmax scale (in place of 1/sqrt(head_dim)), `residual_multiplier`
 * scales each sublayer's output before its residual add, and the logits are divided by `logits_scaling`.
 * Only RoPE positions exist in published checkpoints; another `position_embedding_type` is refused.
 */
function graniteScaling(read: ConfigReader): { attentionScale: number; scaling: ScalingSpec } {
  const positions = read.raw('position_embedding_type');
  if (positions !== undefined && positions !== null && positions !== 'rope') {
    read.fail(`"position_embedding_type" is ${JSON.stringify(positions)}; only "rope" is supported.`);
  }
  return {
    attentionScale: read.positiveNumber('attention_multiplier', 1),
    scaling: {
      embedding: read.positiveNumber('embedding_multiplier', 1),
      residual: read.positiveNumber('residual_multiplier', 1),
      logitsScaling: read.positiveNumber('logits_scaling', 1),
    },
  };
}

/**
 * Qwen's rule (modeling_qwen2_moe.py): layer i is sparse iff it is not in `mlp_only_layers`,
 * there are experts, and (i + 1) is a multiple of `decoder_sparse_step`.
 */
function moeLayerSchedule(table: ArchitectureTable, read: ConfigReader, numLayers: number): (layer: number) => boolean {
  if (table.family === 'deepseek' || table.family === 'glm') return deepseekMoeLayers(read, numLayers);
  if (!table.config.hasDenseLayers) return () => true;
  const step = read.positiveInt('decoder_sparse_step', 1);
  const mlpOnly = new Set(read.intList('mlp_only_layers'));
  for (const layer of mlpOnly) {
    if (layer >= numLayers) read.fail(`"mlp_only_layers" names layer ${layer}, but there are only ${numLayers} layers.`);
  }
  return (layer) => !mlpOnly.has(layer) && (layer + 1) % step === 0;
}

/** transformers 4.x writes `rope_theta`; 5.x nests it in `rope_parameters`. Scaled RoPE is refused, not ignored. */
function ropeTheta(table: ArchitectureTable, read: ConfigReader): number {
  for (const key of ['rope_scaling', 'rope_parameters']) {
    const value = read.raw(key);
    if (value === undefined || value === null) continue;
    if (typeof value !== 'object' || Array.isArray(value)) read.fail(`"${key}" should be an object.`);
    const params = value as Record<string, unknown>;
    const ropeType = params.rope_type ?? params.type ?? 'default';
    // GPT-OSS and Phi-MoE read their scaled RoPE in familyConfig.ts; DeepSeek's YaRN is read by deepseekConfig.ts.
    if (ropeType !== 'default' && key === 'rope_scaling' && table.config.family) continue;
    if (ropeType !== 'default' && !table.scaledRope?.includes(String(ropeType))) read.fail(`"${key}" asks for ${quoteValue(ropeType)} RoPE scaling, which is not supported.`);
    if (key === 'rope_parameters' && params.rope_theta !== undefined && !read.has('rope_theta')) {
      return new ConfigReader(params, `${key} in config.json`).positiveNumber('rope_theta', table.defaults.ropeTheta);
    }
  }
  return read.positiveNumber('rope_theta', table.defaults.ropeTheta);
}
