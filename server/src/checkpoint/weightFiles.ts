/**
 * Finds a model folder's weight files and opens them as one lazy `WeightSource`: a single
 * `model.safetensors`, a sharded set described by `model.safetensors.index.json`, or a lone
 * `*.safetensors`. Pickle files are refused, never loaded.
 */

import { access, readdir, stat } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { isComputeDType, type StoredDType } from './dtype';
import { parseBoundedJson } from '../boundedJson';
import { quoteValue } from '../errors';
import { MAX_METADATA_BYTES, readRegularFile } from '../regularFile';
import { CheckpointError } from './errors';
import type { TensorInfo, WeightSource } from './modelSpec';
import { SafetensorsFile, type SafetensorsEntry } from './safetensors';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';
const PICKLE_EXTENSIONS = new Set(['.bin', '.pt', '.pth', '.ckpt', '.pkl']);

export function isPickleFile(path: string): boolean {
  return PICKLE_EXTENSIONS.has(extname(path).toLowerCase());
}

/** Why we refuse and how to get a safe copy, in one message. */
export function pickleRefusal(path: string, folder: string): CheckpointError {
  return new CheckpointError(
    'unsafeFormat',
    `${path} is a PyTorch pickle file. Loading a pickle can run arbitrary code, so MoE Studio only reads ` +
      `safetensors. Convert the model once in a trusted Python environment, for example:\n` +
      `  python -c "from transformers import AutoModelForCausalLM; ` +
      `AutoModelForCausalLM.from_pretrained('${folder}').save_pretrained('${folder}-safetensors', safe_serialization=True)"\n` +
      `and open the new folder.`,
    path,
  );
}

/** A tensor whose dtype the runtime cannot compute with (e.g. an I64 buffer); kept for bit-exact export. */
export interface UncomputableTensor {
  name: string;
  dtype: StoredDType;
  shape: number[];
  file: string;
}

interface Located {
  file: SafetensorsFile;
  entry: SafetensorsEntry;
}

export class CheckpointWeights implements WeightSource {
  constructor(
    private readonly files: readonly SafetensorsFile[],
    private readonly located: ReadonlyMap<string, Located>,
  ) {}

  /** Every stored tensor, whatever its dtype. */
  get tensorCount(): number {
    return this.located.size;
  }

  has(name: string): boolean {
    const found = this.located.get(name);
    return found !== undefined && isComputeDType(found.entry.dtype);
  }

  names(): string[] {
    return [...this.located.keys()].filter((name) => this.has(name));
  }

  info(name: string): TensorInfo {
    const { file, entry } = this.locate(name);
    if (!isComputeDType(entry.dtype)) {
      throw new CheckpointError('unsupportedDtype', `${basename(file.path)}: tensor ${name} is ${entry.dtype}; expected F32, F16 or BF16.`, file.path);
    }
    return { name, dtype: entry.dtype, shape: [...entry.shape], file: file.path, byteLength: entry.end - entry.begin };
  }

  /** The file holding `name`, whatever its dtype; undefined when no file has it. */
  fileOf(name: string): string | undefined {
    return this.located.get(name)?.file.path;
  }

  /** Tensors stored in a dtype other than F32/F16/BF16; `names()` leaves them out. */
  uncomputableTensors(): UncomputableTensor[] {
    return [...this.located.values()]
      .filter(({ entry }) => !isComputeDType(entry.dtype))
      .map(({ file, entry }) => ({ name: entry.name, dtype: entry.dtype, shape: [...entry.shape], file: file.path }));
  }

  readFloat32(name: string): Promise<Float32Array> {
    return this.locate(name).file.readFloat32(name);
  }

  readFloat32Range(name: string, offset: number, elements: number): Promise<Float32Array> {
    return this.locate(name).file.readFloat32Range(name, offset, elements);
  }

  readRaw(name: string): Promise<Uint8Array> {
    return this.locate(name).file.readRaw(name);
  }

  readRawRange(name: string, byteOffset: number, byteLength: number): Promise<Uint8Array> {
    return this.locate(name).file.readRawRange(name, byteOffset, byteLength);
  }

  async close(): Promise<void> {
    await Promise.all(this.files.map((file) => file.close()));
  }

  private locate(name: string): Located {
    const found = this.located.get(name);
    if (!found) throw new CheckpointError('missingTensor', `The checkpoint has no tensor named ${name}.`);
    return found;
  }
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** Opens the folder's safetensors weights; see the module comment for the layouts accepted. */
export async function openWeights(folder: string): Promise<CheckpointWeights> {
  const isFolder = await stat(folder).then((stats) => stats.isDirectory(), () => false);
  if (!isFolder) throw new CheckpointError('notFound', `${folder} is not a model folder (it is missing or not a directory).`, folder);
  if (await exists(join(folder, INDEX_FILE))) return openSharded(folder);
  if (await exists(join(folder, SINGLE_FILE))) return openFiles([join(folder, SINGLE_FILE)]);

  const entries = await readdir(folder);
  const safetensors = entries.filter((name) => name.endsWith('.safetensors')).sort();
  if (safetensors.length === 1) return openFiles([join(folder, safetensors[0])]);
  if (safetensors.length > 1) {
    throw new CheckpointError(
      'invalidIndex',
      `${folder} has ${safetensors.length} safetensors files (${safetensors.join(', ')}) but no ${INDEX_FILE} saying which tensor is where.`,
      folder,
    );
  }
  const pickle = entries.find(isPickleFile);
  if (pickle) throw pickleRefusal(join(folder, pickle), folder);
  throw new CheckpointError('notFound', `${folder} has no weights: expected ${SINGLE_FILE} or ${INDEX_FILE}.`, folder);
}

/** Opens every file, closing those already open if a later one is invalid. */
async function openAll(paths: readonly string[]): Promise<SafetensorsFile[]> {
  const opened: SafetensorsFile[] = [];
  try {
    for (const path of paths) opened.push(await SafetensorsFile.open(path));
    return opened;
  } catch (error) {
    await Promise.all(opened.map((file) => file.close()));
    throw error;
  }
}

/** Merges the headers of several files; a tensor stored twice is ambiguous and refused. */
function locateAll(files: readonly SafetensorsFile[]): Map<string, Located> {
  const located = new Map<string, Located>();
  for (const file of files) {
    for (const entry of file.entries.values()) {
      const previous = located.get(entry.name);
      if (previous) {
        throw new CheckpointError(
          'invalidIndex',
          `Tensor ${entry.name} is stored in both ${basename(previous.file.path)} and ${basename(file.path)}.`,
          file.path,
        );
      }
      located.set(entry.name, { file, entry });
    }
  }
  return located;
}

async function openFiles(paths: readonly string[]): Promise<CheckpointWeights> {
  const files = await openAll(paths);
  try {
    return new CheckpointWeights(files, locateAll(files));
  } catch (error) {
    await Promise.all(files.map((file) => file.close()));
    throw error;
  }
}

async function openSharded(folder: string): Promise<CheckpointWeights> {
  const indexPath = join(folder, INDEX_FILE);
  const fail = (problem: string): never => {
    throw new CheckpointError('invalidIndex', `${indexPath}: ${problem}`, indexPath);
  };
  let index: unknown;
  try {
    index = parseBoundedJson((await readRegularFile(indexPath, MAX_METADATA_BYTES)).toString('utf8'));
  } catch (error) {
    return fail(`not a readable JSON file (${(error as Error).message}).`);
  }
  const weightMap = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    return fail('"weight_map" is missing or not an object.');
  }
  const shardOf = new Map<string, string>();
  for (const [name, shard] of Object.entries(weightMap as Record<string, unknown>)) {
    // Shards live next to the index; a path elsewhere would let an index point at any file on disk.
    if (typeof shard !== 'string' || shard !== basename(shard) || !shard.endsWith('.safetensors')) {
      fail(`tensor ${quoteValue(name)} maps to ${quoteValue(shard)}; expected a .safetensors file name in the same folder.`);
    }
    shardOf.set(name, shard as string);
  }
  const shardNames = [...new Set(shardOf.values())].sort();
  for (const shard of shardNames) {
    if (!(await exists(join(folder, shard)))) fail(`names shard ${shard}, which is not in ${folder}.`);
  }

  const weights = await openFiles(shardNames.map((shard) => join(folder, shard)));
  for (const [name, shard] of shardOf) {
    const actualFile = weights.fileOf(name);
    if (actualFile === undefined || basename(actualFile) !== shard) {
      await weights.close();
      fail(`says tensor ${name} is in ${shard}, but ${shard} has no such tensor${actualFile ? ` (it is in ${basename(actualFile)})` : ''}.`);
    }
  }
  return weights;
}
