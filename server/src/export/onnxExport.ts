/**
 * Writes the pruned or merged model as one ONNX file (fp32, opset 17, standard ops only) that any
 * onnxruntime runs: `input_ids` and `attention_mask` in, `logits` out, optionally the router logits of
 * every MoE layer. The plan is baked in: kept and merged experts as weights, router mapping, top-k and
 * adaptive gating as constants. It computes what the runtime computes with the plan applied.
 *
 * Safety as for the Hugging Face export: everything goes into `.<name>.partial-<random>/` beside the
 * target, is flushed, loaded back into onnxruntime and checked, and only then renamed into place (the
 * external data file first, the .onnx last). Cancelling or an error removes the partial folder.
 *
 * Weights above `externalDataThreshold` (protobuf cannot hold 2 GiB) go to `<name>.data` beside the
 * model as ONNX external data, page-aligned so onnxruntime can map them. Each runtime graph streams its
 * weights to a scratch file one tensor at a time, and they are copied from there in chunks, so memory
 * stays bounded by one tensor, not the model.
 */

import { open, readFile, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import * as ort from 'onnxruntime-node';
import { DEFAULT_EXTERNAL_DATA_THRESHOLD } from '../runtime/graphBuilder';
import { ExportError } from './exportErrors';
import { nodeFileSystem, partialFolder, removeStalePartials, type ExportFileSystem } from './exportFileSystem';
import { explain, gb, throwIfAborted, type ExportProgress } from './hfExport';
import { resolveExportPlan, type ExportPlan } from './exportPlan';
import type { ExportSource } from './exportLayout';
import { HashedFile, type WrittenFile } from './hashedFile';
import { composeGraph, decodeModel, encodeModel, OnnxModelIO, planComposedGraph, renamePart, type ModelRecord, type TensorRecord } from './onnxGraph';

const CHUNK_BYTES = 16 * 1024 * 1024;
const PAGE_BYTES = 4096;
/** Loading the written model back costs its weights in memory; above this the check reads the file's structure instead. */
const VERIFY_BY_SESSION_MAX_BYTES = 8e9;
const EXTERNAL = 1;

export interface OnnxExportOptions {
  /** Replace an existing target (and its data file), atomically per file. Without it an existing target is refused. */
  overwrite?: boolean;
  /** Add `router_logits_{layer}` outputs ([batch * seq, E'] after the plan's mapping). */
  routerLogits?: boolean;
  /** Weights above this many bytes go to `<name>.data` (ONNX external data); default 1.5 GiB. */
  externalDataThreshold?: number;
  signal?: AbortSignal;
  onProgress?: (progress: ExportProgress) => void;
  /** Where writes go; tests inject failures here. */
  fileSystem?: ExportFileSystem;
}

export interface OnnxExportResult {
  /** The .onnx file. */
  file: string;
  /** The .onnx file and, with external data, `<name>.data`, relative to the target's folder. */
  files: WrittenFile[];
  /** fp32 weight bytes. */
  weightBytes: number;
  externalData: boolean;
  outputs: string[];
  /** Partial folders of earlier, killed exports beside the target that this export removed. */
  staleRemoved: string[];
}

export async function exportOnnx(source: ExportSource, plan: ExportPlan, target: string, options: OnnxExportOptions = {}): Promise<OnnxExportResult> {
  const fs = options.fileSystem ?? nodeFileSystem;
  const signal = options.signal;
  const file = resolve(target);
  const parent = dirname(file);
  const name = basename(file);
  const dataName = `${name}.data`;

  const resolved = resolveExportPlan(source.spec, plan);
  if (dirname(file) === resolve(source.folder) || dirname(file).startsWith(resolve(source.folder) + sep)) {
    throw new ExportError('invalidTarget', `${file} is inside the source model folder ${resolve(source.folder)}; the source is never written to, so export outside it.`);
  }
  await checkTarget(file, dataName, options.overwrite === true);
  const thresholds = Object.fromEntries(Object.entries(plan.layers).map(([layer, layerPlan]) => [layer, layerPlan.adaptiveThreshold]));
  const { parts, weightBytes } = planComposedGraph(source.spec, source.weights, resolved, thresholds, options.routerLogits === true);
  const external = weightBytes > (options.externalDataThreshold ?? DEFAULT_EXTERNAL_DATA_THRESHOLD);
  const free = await fs.freeBytes(parent);
  if (free !== undefined && free < weightBytes) {
    throw new ExportError('noSpace', `The export needs ${gb(weightBytes)} but ${parent} has only ${gb(free)} free. Nothing was written.`);
  }

  const staleRemoved = await removeStalePartials(fs, parent);
  const partial = partialFolder(parent, name);
  const scratch = join(partial, 'parts');
  let created = false;
  try {
    await fs.mkdir(partial);
    created = true;
    await fs.mkdir(scratch);
    let bytesWritten = 0;
    const progress = (phase: ExportProgress['phase'], current?: string) => options.onProgress?.({ phase, bytesWritten, bytesTotal: weightBytes, file: current });
    const data = external ? new DataFile(await HashedFile.create(fs, join(partial, dataName), dataName), dataName) : undefined;
    const graphs: ModelRecord['graph'][] = [];
    let frame: ModelRecord | undefined;
    try {
      for (const part of parts) {
        throwIfAborted(signal);
        const serialized = await part.builder.serialize({ externalDataDir: scratch, externalDataThreshold: external ? 0 : Infinity });
        const partStart = bytesWritten;
        let model: ModelRecord;
        if (serialized.kind === 'bytes') {
          model = decodeModel(serialized.bytes);
        } else {
          model = decodeModel(await readFile(serialized.modelPath));
          await data!.append(model.graph.initializer, serialized.weightsPath, signal, (bytes) => {
            bytesWritten += bytes;
            progress('weights', dataName);
          });
          await rm(serialized.modelPath, { force: true });
          await rm(serialized.weightsPath, { force: true });
        }
        // Small constants stay inside the .onnx, so a part's copied bytes fall a little short of its size.
        bytesWritten = partStart + part.builder.weightBytes();
        progress('weights', external ? dataName : name);
        frame ??= model;
        graphs.push(renamePart(part, model));
      }
    } catch (error) {
      await data?.abandon();
      throw error;
    }
    const files: WrittenFile[] = [];
    if (data) files.push(await data.finish());
    await fs.remove(scratch);
    throwIfAborted(signal);
    progress('files', name);
    const composed = composeGraph(frame!, graphs);
    files.push(await HashedFile.writeWhole(fs, join(partial, name), name, encodeModel(composed)));
    await fs.syncFolder(partial);

    throwIfAborted(signal);
    progress('verifying', name);
    const outputs = composed.graph.output.map((output) => output.name);
    await verifyOnnx(join(partial, name), outputs, weightBytes);
    throwIfAborted(signal);
    progress('finishing', name);
    await moveIntoPlace(fs, partial, parent, data ? [dataName, name] : [name], dataName);
    await fs.remove(partial);
    created = false;
    return { file, files, weightBytes, externalData: external, outputs, staleRemoved };
  } catch (error) {
    if (created) await fs.remove(partial).catch(() => undefined);
    throw explain(error, signal, parent);
  }
}

/** The one external data file: every part's weights appended at page-aligned offsets, their references rewritten. */
class DataFile {
  private bytes = 0;

  constructor(
    private readonly file: HashedFile,
    private readonly location: string,
  ) {}

  async append(tensors: TensorRecord[], partFile: string, signal: AbortSignal | undefined, onChunk: (bytes: number) => void): Promise<void> {
    const handle = await open(partFile, 'r');
    try {
      for (const tensor of tensors) {
        if (tensor.data_location !== EXTERNAL) continue;
        const entry = (key: string) => Number(tensor.external_data?.find((e) => e.key === key)?.value ?? 0);
        const offset = entry('offset');
        const length = entry('length');
        const aligned = Math.ceil(this.bytes / PAGE_BYTES) * PAGE_BYTES;
        if (aligned > this.bytes) await this.file.write(new Uint8Array(aligned - this.bytes));
        for (let done = 0; done < length; done += CHUNK_BYTES) {
          throwIfAborted(signal);
          const chunk = new Uint8Array(Math.min(CHUNK_BYTES, length - done));
          const { bytesRead } = await handle.read(chunk, 0, chunk.byteLength, offset + done);
          if (bytesRead !== chunk.byteLength) throw new Error(`${partFile}: short read of ${tensor.name}`);
          await this.file.write(chunk);
          onChunk(chunk.byteLength);
        }
        tensor.external_data = [
          { key: 'location', value: this.location },
          { key: 'offset', value: String(aligned) },
          { key: 'length', value: String(length) },
        ];
        this.bytes = aligned + length;
      }
    } finally {
      await handle.close();
    }
  }

  finish(): Promise<WrittenFile> {
    return this.file.finish();
  }

  abandon(): Promise<void> {
    return this.file.abandon();
  }
}

async function checkTarget(file: string, dataName: string, overwrite: boolean): Promise<void> {
  if (!file.toLowerCase().endsWith('.onnx')) throw new ExportError('invalidTarget', `An ONNX export is a file ending in .onnx, not ${file}.`);
  const existing = await stat(file).catch(() => undefined);
  if (existing?.isDirectory()) throw new ExportError('invalidTarget', `${file} is a folder; it was left as it is.`);
  const dataFile = join(dirname(file), dataName);
  const existingData = await stat(dataFile).catch(() => undefined);
  if ((existing || existingData) && !overwrite) {
    throw new ExportError('targetExists', `${existing ? file : dataFile} already exists. Choose another file, or confirm that it should be replaced.`);
  }
  if (existingData?.isDirectory()) throw new ExportError('invalidTarget', `${dataFile} is a folder; it was left as it is.`);
  const parent = await stat(dirname(file)).catch(() => undefined);
  if (!parent?.isDirectory()) throw new ExportError('invalidTarget', `${dirname(file)} does not exist; create it first.`);
}

/** Loads the written model the way a user will (onnxruntime), or for very large models checks its structure and data ranges. */
async function verifyOnnx(file: string, outputs: string[], weightBytes: number): Promise<void> {
  const fail = (message: string): never => {
    throw new ExportError('verifyFailed', `The written ONNX model did not check out, so it was not kept: ${message}`);
  };
  const expectedInputs = [OnnxModelIO.inputIds, OnnxModelIO.attentionMask];
  let inputNames: readonly string[];
  let outputNames: readonly string[];
  if (weightBytes <= VERIFY_BY_SESSION_MAX_BYTES) {
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(file, { graphOptimizationLevel: 'disabled', intraOpNumThreads: 1, interOpNumThreads: 1 });
    } catch (error) {
      return fail(`onnxruntime cannot load it (${(error as Error).message})`);
    }
    inputNames = session.inputNames;
    outputNames = session.outputNames;
    await session.release();
  } else {
    const model = decodeModel(await readFile(file));
    inputNames = model.graph.input.map((input) => input.name);
    outputNames = model.graph.output.map((output) => output.name);
    const folder = dirname(file);
    const sizes = new Map<string, number>();
    for (const tensor of model.graph.initializer) {
      if (tensor.data_location !== EXTERNAL) continue;
      const entry = (key: string) => tensor.external_data?.find((e) => e.key === key)?.value ?? '';
      const location = entry('location');
      if (!sizes.has(location)) sizes.set(location, (await stat(join(folder, location)).catch(() => undefined))?.size ?? -1);
      if (Number(entry('offset')) + Number(entry('length')) > sizes.get(location)!) fail(`${tensor.name} lies outside ${location}`);
    }
  }
  if (inputNames.join() !== expectedInputs.join()) fail(`inputs are ${inputNames.join(', ')}, expected ${expectedInputs.join(', ')}`);
  if (outputNames.join() !== outputs.join()) fail(`outputs are ${outputNames.join(', ')}, expected ${outputs.join(', ')}`);
}

/** Renames each file of the partial folder into place; a replaced file is moved aside first and restored if the swap fails. */
async function moveIntoPlace(fs: ExportFileSystem, partial: string, parent: string, names: string[], dataName: string): Promise<void> {
  // A stale data file of a replaced model must not sit beside a new one that does not use it.
  const replaced = names.includes(dataName) ? names : [dataName, ...names];
  const aside: { name: string; path: string }[] = [];
  try {
    for (const name of replaced) {
      const existing = await stat(join(parent, name)).catch(() => undefined);
      if (!existing) continue;
      const path = join(partial, `.replaced-${name}`);
      await fs.rename(join(parent, name), path);
      aside.push({ name, path });
    }
    for (const name of names) await fs.rename(join(partial, name), join(parent, name));
  } catch (error) {
    for (const name of names) await fs.rename(join(parent, name), join(partial, name)).catch(() => undefined);
    for (const { name, path } of aside) await fs.rename(path, join(parent, name)).catch(() => undefined);
    throw error;
  }
  await fs.syncFolder(parent);
}

