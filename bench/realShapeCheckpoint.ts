/**
 * Synthetic checkpoints with the exact layout and shapes of published ones, for bench/realShape.bench.ts:
 * config.json as transformers writes it, bf16 tensors with the published names in ~5 GB shards with
 * model.safetensors.index.json, and a tokenizer. Written tensor by tensor through the streaming writer, so
 * a 13.8 GB checkpoint never needs more than its largest tensor in memory.
 *
 * Weights are random but not degenerate: projections and embeddings N(0, 0.02) (transformers'
 * initializer_range), norms 1, and routers decisive: row e of a router is N(0, 1) * 4 * s_e / sqrt(hidden)
 * with s_e between 0.6 and 1.4, so a token's router logits have a spread of about 2.4-5.6 (top-k clearly
 * above the rest, as in trained models) and some experts are more popular than others.
 * Filling 13.8 GB from a Gaussian generator would take minutes, so every projection is a window, at its own
 * offset, into one 128 MiB pool of bf16 N(0, 0.02) values; routers and norms are computed directly.
 */
import { symlink, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseModelConfig } from '../server/src/checkpoint/config';
import { encodeFloat32 } from '../server/src/checkpoint/dtype';
import { listExpectedTensors } from '../server/src/checkpoint/expectedTensors';
import type { ModelSpec } from '../server/src/checkpoint/modelSpec';
import { tensorByteLength, writeSafetensors, type TensorToWrite } from '../server/src/checkpoint/safetensorsWriter';
import { Prng } from '../test/support/prng';
import { randomCheckpointConfig, type RandomCheckpointOptions } from '../test/support/randomCheckpoint';
import { buildTinyTokenizer } from '../test/support/tinyTokenizer';

const SHARD_BYTES = 5e9;
const POOL_VALUES = 64 * 1024 * 1024;
const BF16_ONE = 0x3f80;

export interface WrittenCheckpoint {
  folder: string;
  spec: ModelSpec;
  config: Record<string, unknown>;
  /** bf16 bytes of all weights. */
  bytes: number;
  /** Shard file of each tensor (the index's weight_map). */
  weightMap: Record<string, string>;
}

export async function writeRealShapeCheckpoint(folder: string, options: RandomCheckpointOptions): Promise<WrittenCheckpoint> {
  const config = { ...randomCheckpointConfig({ ...options, dtype: 'BF16' }) };
  const spec = parseModelConfig(config);
  // GPT-OSS's MXFP4 blocks and scales are U8, as published; everything else bf16.
  const tensors: TensorToWrite[] = listExpectedTensors(spec).map(({ name, shape, dtype }) => ({ name, dtype: dtype ?? 'BF16', shape }));
  const prng = new Prng(options.seed ?? 1);
  const poolBytes = encodeFloat32(prng.normalArray(POOL_VALUES, 0, 0.02), 'BF16');
  const pool = new Uint16Array(poolBytes.buffer, poolBytes.byteOffset, POOL_VALUES);
  const routerNames = new Set(spec.layers.flatMap((layer) => (layer.kind === 'moe' ? [spec.tensors.layer(layer.index).router!] : [])));

  const bytesOf = (tensor: TensorToWrite, index: number): Uint8Array => {
    const count = tensor.shape.reduce((a, b) => a * b, 1);
    if (tensor.dtype === 'U8') return mxfp4Bytes(tensor.name, count, index);
    if (/norm\.weight$/.test(tensor.name)) return new Uint8Array(new Uint16Array(count).fill(BF16_ONE).buffer);
    if (routerNames.has(tensor.name)) return routerBytes(prng, tensor.shape[0], tensor.shape[1]);
    // A window into the pool at an offset of its own; tensors larger than the pool are tiled from several.
    const values = new Uint16Array(count);
    for (let filled = 0, part = 0; filled < count; part++) {
      const take = Math.min(count - filled, POOL_VALUES / 2);
      const offset = ((index * 7919 + part * 104729) * 977) % (POOL_VALUES - take);
      values.set(pool.subarray(offset, offset + take), filled);
      filled += take;
    }
    return new Uint8Array(values.buffer);
  };

  await mkdir(folder, { recursive: true });
  // Published checkpoints cut shards by size, in tensor order (OLMoE-1B-7B: three of about 5 GB).
  const shards: TensorToWrite[][] = [[]];
  let shardBytes = 0;
  for (const tensor of tensors) {
    if (shardBytes > 0 && shardBytes + tensorByteLength(tensor) > SHARD_BYTES) (shards.push([]), (shardBytes = 0));
    shards[shards.length - 1].push(tensor);
    shardBytes += tensorByteLength(tensor);
  }
  const weightMap: Record<string, string> = {};
  let bytes = 0;
  let index = 0;
  for (const [s, shard] of shards.entries()) {
    const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
    const first = index;
    await writeSafetensors(join(folder, file), shard, (tensor, i) => bytesOf(tensor, first + i));
    index += shard.length;
    for (const tensor of shard) {
      weightMap[tensor.name] = file;
      bytes += tensorByteLength(tensor);
    }
  }
  await writeFolderFiles(folder, config, spec, weightMap, bytes);
  return { folder, spec, config, bytes, weightMap };
}

/**
 * The first `layers` layers of a written checkpoint as a checkpoint of its own, without copying weights:
 * config.json says `layers`, the index lists only the tensors that needs, and the shards are symlinks
 * to the full checkpoint's (the loader reads tensors by name, so the other layers in them cost nothing).
 */
export async function writeCut(full: WrittenCheckpoint, folder: string, layers: number): Promise<WrittenCheckpoint> {
  const config = { ...full.config, num_hidden_layers: layers, ...('max_window_layers' in full.config && { max_window_layers: layers }) };
  const spec = parseModelConfig(config);
  const weightMap: Record<string, string> = {};
  let bytes = 0;
  for (const tensor of listExpectedTensors(spec)) {
    weightMap[tensor.name] = full.weightMap[tensor.name];
    bytes += tensorByteLength({ name: tensor.name, dtype: 'BF16', shape: tensor.shape });
  }
  await mkdir(folder, { recursive: true });
  for (const file of new Set(Object.values(weightMap))) await symlink(join(full.folder, file), join(folder, file));
  await writeFolderFiles(folder, config, spec, weightMap, bytes);
  return { folder, spec, config, bytes, weightMap };
}

async function writeFolderFiles(folder: string, config: Record<string, unknown>, spec: ModelSpec, weightMap: Record<string, string>, bytes: number): Promise<void> {
  await writeFile(join(folder, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: bytes }, weight_map: weightMap }, null, 2) + '\n');
  await writeFile(join(folder, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  const { tokenizerJson, tokenizerConfig } = buildTinyTokenizer(spec.vocabSize);
  await writeFile(join(folder, 'tokenizer.json'), JSON.stringify(tokenizerJson));
  await writeFile(join(folder, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig));
}

/**
 * MXFP4 bytes: codes from a window of the bf16 pool's bytes (random enough), scales 2^-7..2^-6 so the decoded
 * weights (E2M1 magnitudes up to 6, mean about 2) have roughly the other projections' N(0, 0.02) scale.
 */
function mxfp4Bytes(name: string, count: number, index: number): Uint8Array {
  const bytes = new Uint8Array(count);
  if (name.endsWith('_scales')) {
    for (let i = 0; i < count; i++) bytes[i] = 120 + ((i * 2654435761 + index) >>> 31);
    return bytes;
  }
  let state = (index * 2654435761) >>> 0 || 1;
  for (let i = 0; i < count; i++) {
    // xorshift32: fast and well spread over the 16 codes of each nibble.
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[i] = state & 0xff;
  }
  return bytes;
}

function routerBytes(prng: Prng, experts: number, hidden: number): Uint8Array {
  const values = new Float32Array(experts * hidden);
  for (let e = 0; e < experts; e++) {
    // s_e spread over [0.6, 1.4] by the golden ratio, so neighbouring experts differ.
    const std = (4 * (0.6 + 0.8 * ((e * 0.6180339887) % 1))) / Math.sqrt(hidden);
    values.set(prng.normalArray(hidden, 0, std), e * hidden);
  }
  return encodeFloat32(values, 'BF16');
}

/** Weight bytes resident per precision: every weight fp32, or the big projections int8 (1 byte + a 4-byte scale per row). */
export function residentWeightBytes(spec: ModelSpec, precision: 'fp32' | 'int8'): number {
  let total = 0;
  for (const { name, shape } of listExpectedTensors(spec)) {
    const count = shape.reduce((a, b) => a * b, 1);
    const projection = shape.length === 2 && /\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj|w1|w2|w3)\.weight$/.test(name);
    total += precision === 'int8' && projection ? count + 4 * shape[0] : 4 * count;
  }
  return total;
}

/** bf16 bytes of the checkpoint `options` describe, before writing it. */
export function bf16Bytes(options: RandomCheckpointOptions): number {
  return listExpectedTensors(parseModelConfig(randomCheckpointConfig(options))).reduce((sum, { shape }) => sum + 2 * shape.reduce((a, b) => a * b, 1), 0);
}
