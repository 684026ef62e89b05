/**
 * Opens a model folder: config.json -> ModelSpec, weights (validated against the spec, read lazily),
 * tokenizer. Nothing else in MoE Studio reads these files directly.
 *
 * The tokenizer is optional: building one parses tokenizer.json (megabytes for real models) and
 * checks its patterns, which a reader of weights and config alone (an export preview) never needs,
 * and a broken tokenizer.json should not stop what does not tokenize.
 */

import { stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { parseModelConfig } from './config';
import { parseBoundedJson } from '../boundedJson';
import { MAX_METADATA_BYTES, readRegularFile } from '../regularFile';
import { CheckpointError } from './errors';
import { Fp8BlockWeights, fp8Quantization } from './fp8Weights';
import type { LoadedCheckpoint } from './modelSpec';
import { loadTokenizer } from './tokenizer';
import { validateWeights } from './validateWeights';
import { isPickleFile, openWeights, pickleRefusal, type UncomputableTensor } from './weightFiles';

export const CONFIG_FILE = 'config.json';

export interface CheckpointLoad extends LoadedCheckpoint {
  /** Stored tensors the runtime cannot compute with (not F32/F16/BF16), kept for bit-exact export. */
  uncomputableTensors: UncomputableTensor[];
}

async function readConfig(folder: string): Promise<Record<string, unknown>> {
  const path = join(folder, CONFIG_FILE);
  let text: string;
  try {
    text = (await readRegularFile(path, MAX_METADATA_BYTES)).toString('utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new CheckpointError('notFound', `${path} is missing; a model folder needs config.json next to its weights.`, path);
    }
    throw new CheckpointError('invalidConfig', `${path} cannot be read: ${(error as Error).message}.`, path);
  }
  try {
    const config: unknown = parseBoundedJson(text);
    if (typeof config === 'object' && config !== null && !Array.isArray(config)) return config as Record<string, unknown>;
  } catch (error) {
    throw new CheckpointError('invalidConfig', `${path} is not valid JSON (${(error as Error).message}).`, path);
  }
  throw new CheckpointError('invalidConfig', `${path} is not a JSON object.`, path);
}

/** A checkpoint opened without its tokenizer: config, spec and weights. */
export type CheckpointWeightsLoad = Omit<CheckpointLoad, 'tokenizer'>;

export interface LoadCheckpointOptions {
  /** false: do not read tokenizer.json at all (default true). */
  tokenizer?: boolean;
}

/**
 * `path` is the model folder; a file inside it (config.json, a .safetensors shard) stands for its
 * folder. A pickle file is refused outright.
 */
export async function loadCheckpoint(path: string): Promise<CheckpointLoad>;
export async function loadCheckpoint(path: string, options: { tokenizer: false }): Promise<CheckpointWeightsLoad>;
export async function loadCheckpoint(path: string, options: LoadCheckpointOptions = {}): Promise<CheckpointLoad | CheckpointWeightsLoad> {
  const target = resolve(path);
  let isFile: boolean;
  try {
    const stats = await stat(target);
    isFile = stats.isFile();
    if (!isFile && !stats.isDirectory()) {
      throw new CheckpointError('notFound', `${target} is neither a model folder nor a file in one (a device or pipe?).`, target);
    }
  } catch (error) {
    if (error instanceof CheckpointError) throw error;
    throw new CheckpointError('notFound', `${target} does not exist.`, target);
  }
  if (isFile && isPickleFile(target)) throw pickleRefusal(target, dirname(target));
  const folder = isFile ? dirname(target) : target;

  // Weights first: a pickle-only folder should be refused for that, whatever its config says.
  const stored = await openWeights(folder);
  try {
    const config = await readConfig(folder);
    const spec = parseModelConfig(config, join(folder, CONFIG_FILE));
    const fp8 = fp8Quantization(config, join(folder, CONFIG_FILE));
    const weights = fp8 ? new Fp8BlockWeights(stored, fp8, folder) : stored;
    validateWeights(spec, weights, folder);
    const opened = { folder, config, spec, weights, uncomputableTensors: weights.uncomputableTensors() };
    if (options.tokenizer === false) return opened;
    return { ...opened, tokenizer: await loadTokenizer(folder, config) };
  } catch (error) {
    await stored.close();
    throw error;
  }
}
