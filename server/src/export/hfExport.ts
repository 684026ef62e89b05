/**
 * Writes a pruned or merged checkpoint as a Hugging Face model folder, in the source's layout and dtype.
 *
 * Everything is written into `.<name>.partial-<random>` beside the target, flushed, verified (every
 * header re-read, every tensor's shape and dtype checked against what the new config.json implies) and
 * only then renamed into place, so the target is either the complete export or untouched. Cancelling,
 * an error or a full disk removes the partial folder; the source is only ever read.
 *
 * Memory is bounded by the chunk size, not the model: tensors stream in chunks of at most
 * CHUNK_BYTES, with one chunk read ahead while the previous one is hashed and written.
 */

import { randomBytes } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { encodeSafetensorsHeader } from '../checkpoint/safetensorsWriter';
import { bytesPerElement, decodeToFloat32, encodeFloat32, isComputeDType } from '../checkpoint/dtype';
import type { DType } from '../checkpoint/modelSpec';
import { permuteColumns, permuteRows } from '../runtime/neuronOrder';
import { dequantizeMxfp4Rows, encodeMxfp4Rows, MXFP4_BLOCK, MXFP4_BLOCK_BYTES, mxfp4BlocksName, mxfp4ScalesName } from '../checkpoint/mxfp4';
import { configText, exportedConfig } from './exportConfig';
import { ExportError } from './exportErrors';
import { nodeFileSystem, partialFolder, removeStalePartials, type ExportFileSystem } from './exportFileSystem';
import { buildExportLayout, type ExportLayout, type ExportSource, type OutputTensor, type Segment } from './exportLayout';
import { assertExactInHuggingFace, resolveExportPlan, type ExportPlan } from './exportPlan';
import { HashedFile, type WrittenFile } from './hashedFile';
import { modelCard } from './modelCard';
import { SourceReader } from './sourceReader';
import { verifyExport } from './verifyExport';

/** transformers' default `max_shard_size` ("5GB"). */
export const DEFAULT_SHARD_BYTES = 5_000_000_000;
export const MANIFEST_FILE = 'moe_studio_manifest.json';
export const INDEX_FILE = 'model.safetensors.index.json';
const SINGLE_FILE = 'model.safetensors';
const CHUNK_BYTES = 16 * 1024 * 1024;
/** Non-weight files up to this size (tokenizers, generation config, chat templates) are copied. */
const MAX_COPIED_FILE_BYTES = 64 * 1024 * 1024;
const WEIGHT_EXTENSIONS = ['.safetensors', '.bin', '.pt', '.pth', '.ckpt', '.pkl', '.gguf', '.onnx', '.h5', '.msgpack', '.npz'];
/** Regenerated, never copied. */
const GENERATED_FILES = new Set(['config.json', 'README.md', INDEX_FILE, MANIFEST_FILE]);

export interface ExportProgress {
  phase: 'weights' | 'files' | 'verifying' | 'finishing';
  /** Weight bytes written so far, headers included, out of `bytesTotal`. */
  bytesWritten: number;
  bytesTotal: number;
  file?: string;
}

export interface ExportOptions {
  /** Largest shard before a new one starts (a bigger tensor gets a shard of its own); default 5 GB. */
  shardBytes?: number;
  /** Replace an existing target, atomically. Without it an existing target is refused. */
  overwrite?: boolean;
  signal?: AbortSignal;
  onProgress?: (progress: ExportProgress) => void;
  /** Where writes go; tests inject failures here. */
  fileSystem?: ExportFileSystem;
}

export interface ExportResult {
  folder: string;
  /** Every file in the folder but the manifest, as listed in it. */
  files: WrittenFile[];
  weightFiles: string[];
  /** Sum of tensor bytes (the index's `metadata.total_size`). */
  tensorBytes: number;
  /** Source files not copied, and why. */
  skippedFiles: { name: string; reason: string }[];
  /** Partial folders of earlier, killed exports beside the target that this export removed. */
  staleRemoved: string[];
}

interface Shard {
  file: string;
  tensors: OutputTensor[];
  header: Uint8Array;
  bytes: number;
}

export function planShards(tensors: readonly OutputTensor[], shardBytes: number): Shard[] {
  const groups: OutputTensor[][] = [];
  let current: OutputTensor[] = [];
  let size = 0;
  for (const tensor of tensors) {
    if (current.length > 0 && size + tensor.byteLength > shardBytes) {
      groups.push(current);
      current = [];
      size = 0;
    }
    current.push(tensor);
    size += tensor.byteLength;
  }
  if (current.length > 0 || groups.length === 0) groups.push(current);
  const pad = (n: number) => String(n).padStart(5, '0');
  return groups.map((group, i) => {
    const header = encodeSafetensorsHeader(group);
    return {
      file: groups.length === 1 ? SINGLE_FILE : `model-${pad(i + 1)}-of-${pad(groups.length)}.safetensors`,
      tensors: group,
      header,
      bytes: header.byteLength + group.reduce((sum, tensor) => sum + tensor.byteLength, 0),
    };
  });
}

export function shardIndex(shards: readonly Shard[]): { metadata: { total_size: number }; weight_map: Record<string, string> } {
  const entries = shards.flatMap((shard) => shard.tensors.map((tensor) => [tensor.name, shard.file] as const));
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const totalSize = shards.reduce((sum, shard) => sum + shard.tensors.reduce((s, tensor) => s + tensor.byteLength, 0), 0);
  return { metadata: { total_size: totalSize }, weight_map: Object.fromEntries(entries) };
}

export async function exportHuggingFace(source: ExportSource, plan: ExportPlan, target: string, options: ExportOptions = {}): Promise<ExportResult> {
  const fs = options.fileSystem ?? nodeFileSystem;
  const signal = options.signal;
  const targetFolder = resolve(target);
  const parent = dirname(targetFolder);
  const name = basename(targetFolder);

  const resolved = resolveExportPlan(source.spec, plan);
  assertExactInHuggingFace(resolved);
  await checkTarget(source, targetFolder, options.overwrite === true);
  const layout = buildExportLayout(source, resolved);
  const shards = planShards(layout.tensors, options.shardBytes ?? DEFAULT_SHARD_BYTES);
  const bytesTotal = shards.reduce((sum, shard) => sum + shard.bytes, 0);
  const free = await fs.freeBytes(parent);
  if (free !== undefined && free < bytesTotal) {
    throw new ExportError('noSpace', `The export needs ${gb(bytesTotal)} but ${parent} has only ${gb(free)} free. Nothing was written.`);
  }
  const config = exportedConfig(source.config, plan, resolved, source.spec.layers.length);

  const reader = await SourceReader.open(layout.sourceTensors);
  const staleRemoved = await removeStalePartials(fs, parent);
  const partial = partialFolder(parent, name);
  let created = false;
  try {
    await fs.mkdir(partial);
    created = true;
    const files: WrittenFile[] = [];
    let bytesWritten = 0;
    const progress = (phase: ExportProgress['phase'], file?: string) => options.onProgress?.({ phase, bytesWritten, bytesTotal, file });
    for (const shard of shards) {
      files.push(
        await writeShard(fs, partial, shard, reader, signal, (chunkBytes) => {
          bytesWritten += chunkBytes;
          progress('weights', shard.file);
        }),
      );
    }
    throwIfAborted(signal);
    progress('files');
    const write = async (file: string, contents: string | Uint8Array) => files.push(await HashedFile.writeWhole(fs, join(partial, file), file, contents));
    if (shards.length > 1) await write(INDEX_FILE, JSON.stringify(shardIndex(shards), null, 2) + '\n');
    await write('config.json', configText(config));
    const { copy, skipped } = await listCopiedFiles(source.folder, layout);
    for (const file of copy) {
      throwIfAborted(signal);
      await write(file, await readFile(join(source.folder, file)));
    }
    const bytesBefore = layout.sourceTensors.reduce((sum, tensor) => sum + tensor.byteLength, 0);
    const tensorBytes = layout.tensors.reduce((sum, tensor) => sum + tensor.byteLength, 0);
    await write('README.md', modelCard({ sourceFolder: source.folder, sourceConfig: source.config, plan, resolved, bytesBefore, bytesAfter: tensorBytes }));
    const manifest = await HashedFile.writeWhole(fs, join(partial, MANIFEST_FILE), MANIFEST_FILE, manifestText(files));
    await fs.syncFolder(partial);

    throwIfAborted(signal);
    progress('verifying');
    await verifyExport(partial, shards, files, resolved.uniformExperts ? config : undefined);
    throwIfAborted(signal);
    progress('finishing');
    await moveIntoPlace(fs, partial, targetFolder, options.overwrite === true);
    created = false;
    // The manifest is written too: a summary counting `files` counts every file in the folder.
    return { folder: targetFolder, files: [...files, manifest], weightFiles: shards.map((shard) => shard.file), tensorBytes, skippedFiles: skipped, staleRemoved };
  } catch (error) {
    if (created) await fs.remove(partial).catch(() => undefined);
    throw explain(error, signal, parent);
  } finally {
    await reader.close();
  }
}

async function checkTarget(source: ExportSource, target: string, overwrite: boolean): Promise<void> {
  const sourceFolder = resolve(source.folder);
  const inside = (folder: string, outer: string) => folder === outer || folder.startsWith(outer + sep);
  if (inside(sourceFolder, target)) {
    throw new ExportError('invalidTarget', `${target} holds the source model; export to a new folder instead.`);
  }
  // Writing inside the source folder would change the source (and a later load would see two models).
  if (inside(target, sourceFolder)) {
    throw new ExportError('invalidTarget', `${target} is inside the source model folder ${sourceFolder}; export to a folder outside it.`);
  }
  const existing = await stat(target).catch(() => undefined);
  if (existing && !overwrite) {
    throw new ExportError('targetExists', `${target} already exists. Choose another folder, or confirm that it should be replaced.`);
  }
  if (existing && !existing.isDirectory()) throw new ExportError('invalidTarget', `${target} exists and is not a folder; it was left as it is.`);
  const parent = await stat(dirname(target)).catch(() => undefined);
  if (!parent?.isDirectory()) throw new ExportError('invalidTarget', `${dirname(target)} does not exist; create it first.`);
}

async function writeShard(
  fs: ExportFileSystem,
  folder: string,
  shard: Shard,
  reader: SourceReader,
  signal: AbortSignal | undefined,
  onChunk: (bytes: number) => void,
): Promise<WrittenFile> {
  const file = await HashedFile.create(fs, join(folder, shard.file), shard.file);
  try {
    await forEachReadingAhead(shardChunks(shard, reader), async (chunk) => {
      throwIfAborted(signal);
      await file.write(chunk);
      onChunk(chunk.byteLength);
    });
  } catch (error) {
    await file.abandon();
    throw error;
  }
  return file.finish();
}

async function* shardChunks(shard: Shard, reader: SourceReader): AsyncGenerator<Uint8Array> {
  yield shard.header;
  for (const tensor of shard.tensors) {
    let produced = 0;
    for (const segment of tensor.segments) {
      if (segment.kind === 'raw') {
        for (let offset = 0; offset < segment.byteLength; offset += CHUNK_BYTES) {
          const length = Math.min(CHUNK_BYTES, segment.byteLength - offset);
          produced += length;
          yield await reader.read(segment.source, segment.byteOffset + offset, length);
        }
        continue;
      }
      if (segment.kind === 'mxfp4') {
        const bytes = await reencodedMxfp4(segment, reader, tensor.name);
        produced += bytes.byteLength;
        yield bytes;
        continue;
      }
      const dtype = tensor.dtype;
      if (!isComputeDType(dtype)) throw new Error(`${tensor.name}: cannot combine ${dtype} values.`);
      const elementBytes = bytesPerElement(dtype);
      const chunkElements = CHUNK_BYTES / 4;
      // A renumbered term reads its whole expert (one [I, H] or [H, I] matrix), so such a merge is summed whole.
      const whole = segment.terms.some((term) => term.neuronOrder) ? await renumberedSum(segment, reader, dtype) : undefined;
      for (let start = 0; start < segment.elements; start += chunkElements) {
        const count = Math.min(chunkElements, segment.elements - start);
        // Same arithmetic and order as the runtime's mergeExperts: fp32 accumulation of c·w, then one rounding.
        let sum: Float32Array;
        if (whole) {
          sum = whole.subarray(start, start + count);
        } else {
          sum = new Float32Array(count);
          for (const term of segment.terms) {
            const values = decodeToFloat32(await reader.read(term.source, (term.elementOffset + start) * elementBytes, count * elementBytes), dtype);
            for (let x = 0; x < count; x++) sum[x] += term.coefficient * values[x];
          }
        }
        const bad = sum.findIndex((value) => !Number.isFinite(value));
        if (bad >= 0) {
          throw new ExportError(
            'invalidSource',
            `${tensor.name} would hold ${sum[bad]} at element ${start + bad}: one of ${tensor.sources.join(', ')} has a value that is not a finite number.`,
          );
        }
        const bytes = encodeFloat32(sum, dtype);
        produced += bytes.byteLength;
        yield bytes;
      }
    }
    if (produced !== tensor.byteLength) throw new Error(`${tensor.name}: produced ${produced} bytes, expected ${tensor.byteLength}.`);
  }
}

/** Σ c·W of a combine segment with renumbered terms, term by term in the runtime's order (layerWeights.ts mergeExperts). */
async function renumberedSum(segment: Extract<Segment, { kind: 'combine' }>, reader: SourceReader, dtype: DType): Promise<Float32Array> {
  const elementBytes = bytesPerElement(dtype);
  const sum = new Float32Array(segment.elements);
  for (const term of segment.terms) {
    const read = decodeToFloat32(await reader.read(term.source, term.elementOffset * elementBytes, segment.elements * elementBytes), dtype);
    const order = term.neuronOrder;
    const values = !order ? read : order.axis === 'rows' ? permuteRows(read, order.order, segment.elements / order.order.length) : permuteColumns(read, order.order);
    for (let x = 0; x < sum.length; x++) sum[x] += term.coefficient * values[x];
  }
  return sum;
}

/**
 * A merged or rescaled expert of an MXFP4 weight: each source expert's blocks and scales decoded, Σ c·W in fp32
 * in the runtime's order (layerWeights.ts mergeExperts), re-encoded; the runtime evaluates the same round trip.
 */
async function reencodedMxfp4(segment: Extract<Segment, { kind: 'mxfp4' }>, reader: SourceReader, name: string): Promise<Uint8Array> {
  const { rows, groups } = segment;
  const blockBytes = rows * groups * MXFP4_BLOCK_BYTES;
  const sum = new Float32Array(rows * groups * MXFP4_BLOCK);
  for (const { expert, coefficient } of segment.terms) {
    const blocks = await reader.read(mxfp4BlocksName(segment.weight), expert * blockBytes, blockBytes);
    const scales = await reader.read(mxfp4ScalesName(segment.weight), expert * rows * groups, rows * groups);
    const values = dequantizeMxfp4Rows(blocks, scales, groups);
    for (let x = 0; x < sum.length; x++) sum[x] += coefficient * values[x];
  }
  const bad = sum.findIndex((value) => !Number.isFinite(value));
  if (bad >= 0) throw new ExportError('invalidSource', `${name} would hold ${sum[bad]} at element ${bad} of a merged expert: a source scale decodes to a value that is not a finite number.`);
  const encoded = encodeMxfp4Rows(sum, rows, groups);
  return segment.part === 'blocks' ? encoded.blocks : encoded.scales;
}

/** Runs `consume` on each item while the next one is already being produced (reads overlap writes). */
async function forEachReadingAhead<T>(items: AsyncGenerator<T>, consume: (item: T) => Promise<void>): Promise<void> {
  let next = items.next();
  try {
    for (;;) {
      const { value, done } = await next;
      if (done) return;
      next = items.next();
      await consume(value);
    }
  } catch (error) {
    // The read ahead may fail too; its error is not the interesting one.
    next.catch(() => undefined);
    await items.return(undefined).catch(() => undefined);
    throw error;
  }
}

/** Non-weight files of the source folder (tokenizer, generation config, …); large or weight-like ones are skipped. */
async function listCopiedFiles(folder: string, layout: ExportLayout): Promise<{ copy: string[]; skipped: { name: string; reason: string }[] }> {
  const weightFiles = new Set(layout.sourceTensors.map((tensor) => relative(folder, tensor.file)));
  const copy: string[] = [];
  const skipped: { name: string; reason: string }[] = [];
  for (const entry of (await readdir(folder, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const name = entry.name;
    if (!entry.isFile() || GENERATED_FILES.has(name) || weightFiles.has(name) || name.startsWith('.')) continue;
    if (WEIGHT_EXTENSIONS.some((extension) => name.toLowerCase().endsWith(extension))) {
      skipped.push({ name, reason: 'weights of another format or not part of this model' });
      continue;
    }
    const size = (await stat(join(folder, name))).size;
    if (size > MAX_COPIED_FILE_BYTES) {
      skipped.push({ name, reason: `${gb(size)}, too large for a non-weight file` });
      continue;
    }
    copy.push(name);
  }
  return { copy, skipped };
}

function manifestText(files: readonly WrittenFile[]): string {
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : 1));
  return (
    JSON.stringify(
      {
        format: 'moe-studio-export-manifest',
        version: 1,
        files: Object.fromEntries(sorted.map((file) => [file.path, { bytes: file.bytes, sha256: file.sha256 }])),
      },
      null,
      2,
    ) + '\n'
  );
}

/** The target appears complete or not at all; a replaced target is renamed aside first and restored if the swap fails. */
async function moveIntoPlace(fs: ExportFileSystem, partial: string, target: string, overwrite: boolean): Promise<void> {
  const parent = dirname(target);
  const existing = await stat(target).catch(() => undefined);
  if (!existing) {
    await fs.rename(partial, target);
    await fs.syncFolder(parent);
    return;
  }
  if (!overwrite) throw new ExportError('targetExists', `${target} appeared while exporting; it was left as it is.`);
  const aside = join(parent, `.${basename(target)}.replaced-${randomBytes(6).toString('hex')}`);
  await fs.rename(target, aside);
  try {
    await fs.rename(partial, target);
  } catch (error) {
    await fs.rename(aside, target);
    throw error;
  }
  await fs.syncFolder(parent);
  await fs.remove(aside);
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new ExportError('cancelled', 'The export was cancelled; nothing was written.');
}

export function explain(error: unknown, signal: AbortSignal | undefined, parent: string): unknown {
  if (error instanceof ExportError) return error;
  if (signal?.aborted) return new ExportError('cancelled', 'The export was cancelled; nothing was written.');
  const code = (error as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new ExportError('noSpace', `The disk holding ${parent} is full. The partial export was removed; free some space and try again.`);
  }
  const wrapped = new ExportError('io', `The export failed and was removed: ${(error as Error)?.message ?? String(error)}`);
  wrapped.cause = error;
  return wrapped;
}

export function gb(bytes: number): string {
  return `${(bytes / 1e9).toFixed(2)} GB`;
}
