/**
 * Config keys of the architectures that need more than the common ones: GPT-OSS (configuration_gpt_oss.py)
 * and Phi-MoE (configuration_phimoe.py). Each key is read and checked once, with transformers' defaults.
 */

import type { ArchitectureTable } from './architectures';
import type { ConfigReader } from './config';
import { MXFP4_BLOCK } from './mxfp4';
import type { AttentionSpec, MoeSpec, RopeScaling } from './modelSpec';
import { quoteValue } from '../errors';

export interface FamilyOptions {
  attention: Partial<AttentionSpec>;
  moe: Partial<MoeSpec>;
  layerNorm?: boolean;
  lmHeadBias?: boolean;
  /** GPT-OSS experts stored as MXFP4 blocks and scales. */
  mxfp4?: boolean;
}

/** GptOssExperts hard-codes alpha; the limit is `swiglu_limit`. */
const GPT_OSS_ALPHA = 1.702;

export function familyOptions(table: ArchitectureTable, read: ConfigReader, shape: { numLayers: number; headDim: number; hiddenSize: number; intermediateSize: number; topK: number }): FamilyOptions {
  if (table.config.family === 'gptOss') return gptOssOptions(read, shape);
  if (table.config.family === 'phimoe') return phimoeOptions(read, shape);
  return { attention: {}, moe: {} };
}

function gptOssOptions(read: ConfigReader, { numLayers, headDim, hiddenSize, intermediateSize }: { numLayers: number; headDim: number; hiddenSize: number; intermediateSize: number }): FamilyOptions {
  const size = read.positiveInt('sliding_window', 128);
  const declared = read.raw('layer_types');
  // GptOssConfig's default: sliding on even layers, full attention on odd ones.
  const types = declared ?? Array.from({ length: numLayers }, (_, i) => ((i + 1) % 2 ? 'sliding_attention' : 'full_attention'));
  if (!Array.isArray(types) || types.length !== numLayers || !types.every((t) => t === 'sliding_attention' || t === 'full_attention')) {
    read.fail(`"layer_types" should list "sliding_attention" or "full_attention" for each of the ${numLayers} layers, got ${quoteValue(declared)}.`);
  }
  const slidingLayers = (types as string[]).flatMap((type, i) => (type === 'sliding_attention' ? [i] : []));

  const quantization = read.raw('quantization_config');
  let mxfp4 = false;
  if (quantization !== undefined && quantization !== null) {
    const method = typeof quantization === 'object' ? (quantization as Record<string, unknown>).quant_method : undefined;
    if (method !== 'mxfp4') read.fail(`"quantization_config" has quant_method ${quoteValue(method)}; only "mxfp4" (or no quantization) is supported.`);
    for (const [key, value] of [['hidden_size', hiddenSize], ['intermediate_size', intermediateSize]] as const) {
      if (value % MXFP4_BLOCK !== 0) read.fail(`"${key}" (${value}) is not a multiple of ${MXFP4_BLOCK}, the MXFP4 block size.`);
    }
    mxfp4 = true;
  }
  return {
    attention: { sinks: true, ...(slidingLayers.length && { slidingWindow: { size, layers: slidingLayers } }), ...optionalRope(read, headDim, 'yarn') },
    moe: { routerBias: true, expertBias: true, clampedSwiglu: { alpha: GPT_OSS_ALPHA, limit: read.positiveNumber('swiglu_limit', 7) } },
    mxfp4,
  };
}

function phimoeOptions(read: ConfigReader, { numLayers, headDim, topK }: { numLayers: number; headDim: number; topK: number }): FamilyOptions {
  // sparsemixer raises for any other k.
  if (topK !== 2) read.fail(`"num_experts_per_tok" is ${topK}; Phi-MoE's sparsemixer routes exactly 2 experts per token.`);
  const jitter = read.raw('router_jitter_noise') ?? 0.01;
  if (typeof jitter !== 'number' || !Number.isFinite(jitter) || jitter < 0) read.fail(`"router_jitter_noise" should be a number ≥ 0, got ${quoteValue(jitter)}.`);
  const window = read.has('sliding_window') ? read.positiveInt('sliding_window') : undefined;
  return {
    attention: { ...(window && { slidingWindow: { size: window, layers: Array.from({ length: numLayers }, (_, i) => i) } }), ...optionalRope(read, headDim, 'longrope') },
    moe: { sparsemixer: { jitterEps: jitter } },
    layerNorm: true,
    lmHeadBias: read.boolean('lm_head_bias', false),
  };
}

/** `rope_scaling` of the one scaled type the family uses, or nothing when it is absent or "default". */
function optionalRope(read: ConfigReader, headDim: number, type: 'yarn' | 'longrope'): { ropeScaling?: RopeScaling } {
  const value = read.raw('rope_scaling');
  if (value === undefined || value === null) return {};
  const params = value as Record<string, unknown>;
  const ropeType = params.rope_type ?? params.type ?? 'default';
  if (ropeType === 'default') return {};
  const number = (key: string, fallback?: number): number => {
    const v = params[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) read.fail(`"rope_scaling.${key}" should be a positive number, got ${quoteValue(params[key])}.`);
    return v;
  };
  if (type === 'yarn' && ropeType !== 'yarn') read.fail(`"rope_scaling" asks for ${quoteValue(ropeType)} RoPE scaling; GPT-OSS uses "yarn".`);
  if (type === 'longrope' && ropeType !== 'longrope' && ropeType !== 'su') read.fail(`"rope_scaling" asks for ${quoteValue(ropeType)} RoPE scaling; Phi-MoE uses "longrope".`);
  const originalMaxPositions = number('original_max_position_embeddings', read.has('original_max_position_embeddings') ? read.positiveInt('original_max_position_embeddings') : undefined);
  if (type === 'yarn') {
    const factor = number('factor');
    // _compute_yarn_parameters: attention_factor, else get_mscale(factor) (or its mscale / mscale_all_dim ratio).
    const mscale = (scale: number, m = 1) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
    const m = params.mscale as number | undefined;
    const mAll = params.mscale_all_dim as number | undefined;
    const attentionFactor = params.attention_factor !== undefined && params.attention_factor !== null ? number('attention_factor') : m && mAll ? mscale(factor, m) / mscale(factor, mAll) : mscale(factor);
    return {
      ropeScaling: {
        type: 'yarn',
        factor,
        originalMaxPositions,
        betaFast: (params.beta_fast as number) || 32,
        betaSlow: (params.beta_slow as number) || 1,
        truncate: params.truncate === undefined ? true : params.truncate === true,
        attentionFactor,
      },
    };
  }
  const factors = (key: string): number[] => {
    const list = params[key];
    if (!Array.isArray(list) || list.length !== headDim / 2 || !list.every((f) => typeof f === 'number' && Number.isFinite(f) && f > 0)) {
      read.fail(`"rope_scaling.${key}" should list ${headDim / 2} positive numbers (half the head size), got ${quoteValue(list)}.`);
    }
    return list as number[];
  };
  return {
    ropeScaling: {
      type: 'longrope',
      shortFactor: factors('short_factor'),
      longFactor: factors('long_factor'),
      shortMscale: number('short_mscale'),
      longMscale: number('long_mscale'),
      originalMaxPositions,
    },
  };
}
