/**
 * Writes a small, random but well-formed checkpoint folder for any supported architecture: real
 * safetensors files with the exact published tensor names, a config.json as transformers writes it,
 * and a byte-level BPE tokenizer. Tests and the runtime's reference comparisons load it like a real model.
 *
 * Weights have a sensible scale (projections N(0, weightStd), norms near 1) and the router is
 * deliberately sharp, so top-k choices are not near-ties that fp rounding could flip between runtimes.
 */

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseModelConfig } from '../../server/src/checkpoint/config';
import { decodeToFloat32, encodeFloat32 } from '../../server/src/checkpoint/dtype';
import { listExpectedTensors } from '../../server/src/checkpoint/expectedTensors';
import type { ArchitectureName, DType, ModelSpec } from '../../server/src/checkpoint/modelSpec';
import { writeSafetensors, type TensorToWrite } from '../../server/src/checkpoint/safetensorsWriter';
import { deepseekConfig, fp8Eligible, glmConfig, type DeepseekOptions } from './deepseekCheckpoint';
import { encodeFp8Blocks } from './fp8Blocks';
import { Prng } from './prng';
import { buildTinyTokenizer, MIN_VOCAB_SIZE } from './tinyTokenizer';

export interface RandomCheckpointOptions {
  architecture: ArchitectureName;
  seed?: number;
  /** Storage dtype of every tensor; default F32. */
  dtype?: DType;
  /** 1 writes model.safetensors; more writes model-0000k-of-0000n.safetensors plus the index. */
  shards?: number;
  tieWordEmbeddings?: boolean;
  /** At least MIN_VOCAB_SIZE (259) so the byte-level tokenizer covers every byte; default 320. */
  vocabSize?: number;
  hiddenSize?: number;
  numLayers?: number;
  numHeads?: number;
  numKvHeads?: number;
  /** Written as config `head_dim` only when given; otherwise hiddenSize / numHeads. */
  headDim?: number;
  numExperts?: number;
  topK?: number;
  /** Per-expert intermediate size. */
  expertIntermediateSize?: number;
  /** Qwen2-MoE only. */
  sharedExpertIntermediateSize?: number;
  /** Qwen dense layers (`intermediate_size`). */
  denseIntermediateSize?: number;
  /** Qwen2/3-MoE: default [1] for Qwen2-MoE (so a dense layer is always exercised), [] for Qwen3-MoE. */
  mlpOnlyLayers?: number[];
  decoderSparseStep?: number;
  /** Ignored for Mixtral, which always renormalises. Default: true for Qwen3-MoE, false otherwise. */
  normTopKProb?: boolean;
  ropeTheta?: number;
  weightStd?: number;
  /** Standard deviation of router weights; larger means more decisive routing. Default 0.5. */
  routerStd?: number;
  /** Write tokenizer.json and tokenizer_config.json; default true. */
  tokenizer?: boolean;
  /** DeepSeek: the rest of its config (deepseekCheckpoint.ts), and FP8 weights as DeepSeek-V3 publishes them. */
  deepseek?: DeepseekOptions;
  /** GPT-OSS: experts as MXFP4 blocks and scales (quantization_config mxfp4) rather than `dtype` parameters. Default true, as published. */
  mxfp4?: boolean;
  /** GPT-OSS `swiglu_limit` (default 7, as published; a small one makes the clamps bite on random weights). */
  swigluLimit?: number;
  /** GPT-OSS / Phi-MoE `sliding_window` (GPT-OSS default 4 here so short sequences cross it; Phi-MoE 131072 as published). */
  slidingWindow?: number;
  /** Phi-MoE: rope_scaling.original_max_position_embeddings (4096 as published; below a sequence's length picks the long factors). */
  ropeOriginalMax?: number;
}

export interface RandomCheckpoint {
  folder: string;
  config: Record<string, unknown>;
  spec: ModelSpec;
  /** Every tensor as the loader will decode it (already rounded through the storage dtype). */
  weights: Map<string, Float32Array>;
  /** Weight file names, in the folder. */
  files: string[];
}

const TORCH_DTYPE: Record<DType, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

export function randomCheckpointConfig(options: RandomCheckpointOptions): Record<string, unknown> {
  const architecture = options.architecture;
  const hiddenSize = options.hiddenSize ?? 64;
  const numHeads = options.numHeads ?? 4;
  const numLayers = options.numLayers ?? 2;
  const common: Record<string, unknown> = {
    architectures: [architecture],
    vocab_size: options.vocabSize ?? 320,
    hidden_size: hiddenSize,
    num_hidden_layers: numLayers,
    num_attention_heads: numHeads,
    num_key_value_heads: options.numKvHeads ?? 2,
    ...(options.headDim !== undefined && { head_dim: options.headDim }),
    hidden_act: 'silu',
    max_position_embeddings: 4096,
    initializer_range: 0.02,
    num_experts_per_tok: options.topK ?? 2,
    tie_word_embeddings: options.tieWordEmbeddings ?? false,
    bos_token_id: 1,
    eos_token_id: 2,
    use_cache: true,
    attention_dropout: 0.0,
    output_router_logits: false,
    torch_dtype: TORCH_DTYPE[options.dtype ?? 'F32'],
    transformers_version: '4.51.3',
  };
  const numExperts = options.numExperts ?? 8;
  const expertIntermediate = options.expertIntermediateSize ?? 32;
  const denseIntermediate = options.denseIntermediateSize ?? 96;
  switch (architecture) {
    case 'MixtralForCausalLM':
      return {
        ...common,
        model_type: 'mixtral',
        num_local_experts: numExperts,
        intermediate_size: expertIntermediate,
        rms_norm_eps: 1e-5,
        rope_theta: options.ropeTheta ?? 1e6,
        sliding_window: null,
        router_aux_loss_coef: 0.02,
        router_jitter_noise: 0.0,
      };
    case 'Qwen2MoeForCausalLM':
      return {
        ...common,
        model_type: 'qwen2_moe',
        num_experts: numExperts,
        moe_intermediate_size: expertIntermediate,
        shared_expert_intermediate_size: options.sharedExpertIntermediateSize ?? 48,
        intermediate_size: denseIntermediate,
        decoder_sparse_step: options.decoderSparseStep ?? 1,
        mlp_only_layers: options.mlpOnlyLayers ?? [Math.min(1, numLayers - 1)],
        norm_topk_prob: options.normTopKProb ?? false,
        rms_norm_eps: 1e-6,
        rope_theta: options.ropeTheta ?? 10000,
        use_sliding_window: false,
        sliding_window: 4096,
        max_window_layers: numLayers,
        router_aux_loss_coef: 0.001,
      };
    case 'Qwen3MoeForCausalLM':
      return {
        ...common,
        model_type: 'qwen3_moe',
        num_experts: numExperts,
        moe_intermediate_size: expertIntermediate,
        intermediate_size: denseIntermediate,
        decoder_sparse_step: options.decoderSparseStep ?? 1,
        mlp_only_layers: options.mlpOnlyLayers ?? [],
        norm_topk_prob: options.normTopKProb ?? true,
        attention_bias: false,
        rms_norm_eps: 1e-6,
        rope_theta: options.ropeTheta ?? 10000,
        rope_scaling: null,
        use_sliding_window: false,
        sliding_window: null,
        max_window_layers: numLayers,
        router_aux_loss_coef: 0.001,
      };
    case 'OlmoeForCausalLM':
      return {
        ...common,
        model_type: 'olmoe',
        num_experts: numExperts,
        intermediate_size: expertIntermediate,
        norm_topk_prob: options.normTopKProb ?? false,
        attention_bias: false,
        clip_qkv: null,
        rms_norm_eps: 1e-5,
        rope_theta: options.ropeTheta ?? 10000,
        rope_scaling: null,
        pad_token_id: 0,
        router_aux_loss_coef: 0.01,
      };
    case 'GraniteMoeForCausalLM':
      // As ibm-granite/granite-3.0-1b-a400m-base writes it (multipliers of that order, not 1, so each is exercised).
      return {
        ...common,
        model_type: 'granitemoe',
        num_local_experts: numExperts,
        intermediate_size: expertIntermediate,
        attention_bias: false,
        rms_norm_eps: 1e-6,
        rope_theta: options.ropeTheta ?? 10000,
        rope_scaling: null,
        position_embedding_type: 'rope',
        embedding_multiplier: 12.0,
        attention_multiplier: 0.015625,
        residual_multiplier: 0.22,
        logits_scaling: 6.0,
        router_aux_loss_coef: 0.0,
        pad_token_id: 0,
      };
    case 'DeepseekV3ForCausalLM':
    case 'DeepseekV2ForCausalLM':
      return deepseekConfig(common, architecture, { numExperts, expertIntermediate, denseIntermediate, ropeTheta: options.ropeTheta, normTopKProb: options.normTopKProb }, options.deepseek ?? {});
    case 'Glm4MoeForCausalLM':
      return glmConfig(common, { numExperts, expertIntermediate, denseIntermediate, ropeTheta: options.ropeTheta, normTopKProb: options.normTopKProb }, options.deepseek ?? {});
    case 'GptOssForCausalLM':
      return gptOssConfig(common, options, numExperts, expertIntermediate);
    case 'PhimoeForCausalLM':
      return phimoeConfig(common, options, numExperts, expertIntermediate);
  }
}

/** As openai/gpt-oss-20b writes it: sinks, alternating sliding/full layers, YaRN, MXFP4 experts. */
function gptOssConfig(common: Record<string, unknown>, options: RandomCheckpointOptions, numExperts: number, expertIntermediate: number): Record<string, unknown> {
  const numLayers = common.num_hidden_layers as number;
  return {
    ...common,
    model_type: 'gpt_oss',
    head_dim: options.headDim ?? (common.hidden_size as number) / (common.num_attention_heads as number),
    num_local_experts: numExperts,
    experts_per_token: common.num_experts_per_tok,
    intermediate_size: expertIntermediate,
    attention_bias: true,
    layer_types: Array.from({ length: numLayers }, (_, i) => (i % 2 === 0 ? 'sliding_attention' : 'full_attention')),
    sliding_window: options.slidingWindow ?? 4,
    swiglu_limit: options.swigluLimit ?? 7.0,
    initial_context_length: 4096,
    max_position_embeddings: 131072,
    rms_norm_eps: 1e-5,
    rope_theta: options.ropeTheta ?? 150000,
    rope_scaling: { beta_fast: 32.0, beta_slow: 1.0, factor: 32.0, original_max_position_embeddings: 4096, rope_type: 'yarn', truncate: false },
    router_aux_loss_coef: 0.9,
    pad_token_id: 0,
    ...((options.mxfp4 ?? true) && {
      quantization_config: { modules_to_not_convert: ['model.layers.*.self_attn', 'model.layers.*.mlp.router', 'model.embed_tokens', 'lm_head'], quant_method: 'mxfp4' },
    }),
  };
}

/** As microsoft/Phi-3.5-MoE-instruct writes it (LongRoPE factors made up, one per rotary frequency). */
function phimoeConfig(common: Record<string, unknown>, options: RandomCheckpointOptions, numExperts: number, expertIntermediate: number): Record<string, unknown> {
  const headDim = options.headDim ?? (common.hidden_size as number) / (common.num_attention_heads as number);
  const factors = (from: number, step: number) => Array.from({ length: headDim / 2 }, (_, i) => from + step * i);
  const originalMax = options.ropeOriginalMax ?? 4096;
  return {
    ...common,
    architectures: ['PhiMoEForCausalLM'],
    model_type: 'phimoe',
    num_local_experts: numExperts,
    intermediate_size: expertIntermediate,
    attention_bias: true,
    lm_head_bias: true,
    input_jitter_noise: 0.01,
    router_jitter_noise: 0.01,
    max_position_embeddings: 131072,
    original_max_position_embeddings: originalMax,
    rms_norm_eps: 1e-5,
    rope_theta: options.ropeTheta ?? 10000.0,
    rope_scaling: { long_factor: factors(1.1, 0.9), long_mscale: 1.243163121016122, original_max_position_embeddings: originalMax, short_factor: factors(1.0, 0.05), short_mscale: 1.243163121016122, type: 'longrope' },
    sliding_window: options.slidingWindow ?? 131072,
    router_aux_loss_coef: 0.0,
    hidden_dropout: 0.0,
  };
}

/** Norm weights are vectors named `*norm.weight` / `*layernorm.weight`; they start near 1, not 0. */
function isNormWeight(name: string): boolean {
  return /norm\.weight$/.test(name);
}

function isRouter(name: string): boolean {
  return /\.(block_sparse_moe|mlp)\.gate\.weight$|\.router\.layer\.weight$|\.mlp\.router\.weight$/.test(name);
}

/**
 * MXFP4 bytes: random E2M1 codes, and E8M0 scales 2^-8..2^-5 so the experts' values have the other weights'
 * scale (E2M1 magnitudes reach 6).
 */
function randomMxfp4(name: string, count: number, prng: Prng): Uint8Array {
  const scales = name.endsWith('_scales');
  return Uint8Array.from({ length: count }, () => (scales ? 119 + Math.floor(prng.next() * 4) : Math.floor(prng.next() * 256)));
}

/** DeepSeek V3's and GLM-4.5's correction bias is published in F32 whatever the weights' dtype. */
function isCorrectionBias(name: string): boolean {
  return name.endsWith('.e_score_correction_bias');
}

export async function writeRandomCheckpoint(folder: string, options: RandomCheckpointOptions): Promise<RandomCheckpoint> {
  const dtype = options.dtype ?? 'F32';
  const shards = options.shards ?? 1;
  const config = randomCheckpointConfig(options);
  const spec = parseModelConfig(config);
  if (spec.vocabSize < MIN_VOCAB_SIZE && options.tokenizer !== false) {
    throw new Error(`vocabSize must be at least ${MIN_VOCAB_SIZE} for the tokenizer (or pass tokenizer: false).`);
  }
  const prng = new Prng(options.seed ?? 1);
  const weightStd = options.weightStd ?? 0.05;
  // DeepSeek V3's sigmoid saturates on logits as sharp as a softmax router's; a softer router keeps its choices apart.
  const routerStd = options.routerStd ?? (options.architecture === 'DeepseekV3ForCausalLM' || options.architecture === 'Glm4MoeForCausalLM' ? 0.15 : 0.5);

  const expected = listExpectedTensors(spec);
  const weights = new Map<string, Float32Array>();
  const stored = new Map<string, Uint8Array>();
  const tensorsToWrite: TensorToWrite[] = [];
  const fp8 = options.deepseek?.fp8;
  for (const { name, shape, dtype: storedAs } of expected) {
    const count = shape.reduce((a, b) => a * b, 1);
    if (storedAs === 'U8') {
      stored.set(name, randomMxfp4(name, count, prng));
      tensorsToWrite.push({ name, dtype: 'U8', shape });
      continue;
    }
    // GPT-OSS sinks are logits next to q·k scores: of their order, so they take a real share of each row.
    const std = name.endsWith('.sinks') ? 1 : isRouter(name) ? routerStd : name.endsWith('.bias') || name.endsWith('_bias') ? 0.02 : weightStd;
    const values = isNormWeight(name)
      ? prng.normalArray(count, 1, 0.05)
      : prng.normalArray(count, 0, std);
    if (fp8 && fp8Eligible(name)) {
      const encoded = encodeFp8Blocks(values, shape[0], shape[1], fp8.blockSize, fp8.scaleDtype);
      stored.set(name, encoded.codes);
      stored.set(name + '_scale_inv', encoded.scaleBytes);
      weights.set(name, encoded.decoded);
      tensorsToWrite.push({ name, dtype: 'F8_E4M3', shape }, { name: name + '_scale_inv', dtype: fp8.scaleDtype, shape: encoded.scaleShape });
      continue;
    }
    const tensorDtype: DType = isCorrectionBias(name) ? 'F32' : dtype;
    const bytes = encodeFloat32(values, tensorDtype).slice();
    stored.set(name, bytes);
    weights.set(name, decodeToFloat32(bytes, tensorDtype).slice());
    tensorsToWrite.push({ name, dtype: tensorDtype, shape });
  }

  await mkdir(folder, { recursive: true });
  const bytesOf = (tensor: { name: string }) => stored.get(tensor.name) as Uint8Array;
  const files: string[] = [];
  if (shards <= 1) {
    await writeSafetensors(join(folder, 'model.safetensors'), tensorsToWrite, bytesOf);
    files.push('model.safetensors');
  } else {
    const perShard = Math.ceil(tensorsToWrite.length / shards);
    const weightMap: Record<string, string> = {};
    let totalSize = 0;
    for (let shard = 0; shard < shards; shard++) {
      const file = `model-${String(shard + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
      const slice = tensorsToWrite.slice(shard * perShard, (shard + 1) * perShard);
      await writeSafetensors(join(folder, file), slice, bytesOf);
      for (const tensor of slice) {
        weightMap[tensor.name] = file;
        totalSize += (stored.get(tensor.name) as Uint8Array).byteLength;
      }
      files.push(file);
    }
    const index = { metadata: { total_size: totalSize }, weight_map: weightMap };
    await writeFile(join(folder, 'model.safetensors.index.json'), JSON.stringify(index, null, 2) + '\n');
  }

  await writeFile(join(folder, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  if (options.tokenizer !== false) {
    const { tokenizerJson, tokenizerConfig } = buildTinyTokenizer(spec.vocabSize);
    await writeFile(join(folder, 'tokenizer.json'), JSON.stringify(tokenizerJson, null, 2) + '\n');
    await writeFile(join(folder, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig, null, 2) + '\n');
  }
  return { folder, config, spec, weights, files };
}
