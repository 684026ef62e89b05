/**
 * What a profile records about its model, without loading any weights: the identity that decides
 * whether a saved profile is still current, and the shape shown in its header.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CheckpointError, parseModelConfig } from '../../checkpoint';
import type { ModelSpec } from '../../checkpoint/modelSpec';
import { MAX_HEADER_BYTES } from '../../checkpoint/safetensors';
import type { ProfileModel } from '../types';

/** The files besides weights that change what a profile would contain: the architecture and the tokenisation. */
const IDENTITY_FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json'];

export interface ModelIdentity {
  folder: string;
  spec: ModelSpec;
  config: Record<string, unknown>;
  fingerprint: string;
}

/** Bytes hashed from the start of each tensor's data, and from each of the evenly spaced samples of a file. */
const TENSOR_PREFIX_BYTES = 4096;
const FILE_SAMPLES = 16;
const FILE_SAMPLE_BYTES = 65536;

/**
 * SHA-256 over config.json, the tokenizer files and, for every safetensors file, its name, size, header
 * (dtypes, shapes, offsets) and samples of its weights: the first 4 KiB of every tensor and 16 blocks of
 * 64 KiB spread over the file. Saved profiles and cached full-model baselines are keyed by it, so weights
 * retrained, merged or replaced in place with the same shapes must change it; reading about 1 MB per file
 * instead of gigabytes keeps it instant. It depends on content only (no timestamps), so a copied or cloned
 * model keeps its profiles.
 */
export async function modelIdentity(modelFolder: string): Promise<ModelIdentity> {
  const folder = path.resolve(modelFolder);
  const configPath = path.join(folder, 'config.json');
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(await fs.promises.readFile(configPath, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    throw new CheckpointError('notFound', `${configPath} cannot be read (${(error as Error).message}); the model folder needs config.json.`, configPath);
  }
  const spec = parseModelConfig(config, configPath);
  const hash = createHash('sha256');
  for (const name of IDENTITY_FILES) {
    const file = path.join(folder, name);
    if (fs.existsSync(file)) hash.update(`${name}\0`).update(await fs.promises.readFile(file));
  }
  const shards = (await fs.promises.readdir(folder)).filter((name) => name.endsWith('.safetensors')).sort();
  for (const name of shards) {
    const handle = await fs.promises.open(path.join(folder, name), 'r');
    try {
      const { size } = await handle.stat();
      const lengthBytes = Buffer.alloc(8);
      await handle.read(lengthBytes, 0, 8, 0);
      const headerLength = Number(lengthBytes.readBigUInt64LE(0));
      const header = Buffer.alloc(Math.max(0, Math.min(headerLength, size - 8, MAX_HEADER_BYTES)));
      await handle.read(header, 0, header.length, 8);
      hash.update(`${name}\0${size}\0`).update(header);
      const dataStart = 8 + header.length;
      const sample = async (offset: number, length: number) => {
        const bytes = Buffer.alloc(Math.max(0, Math.min(length, size - offset)));
        if (bytes.length > 0) await handle.read(bytes, 0, bytes.length, offset);
        hash.update(bytes);
      };
      for (const offset of tensorDataOffsets(header)) await sample(dataStart + offset, TENSOR_PREFIX_BYTES);
      const dataLength = size - dataStart;
      for (let i = 0; i < FILE_SAMPLES && dataLength > 0; i++) await sample(dataStart + Math.floor((i * dataLength) / FILE_SAMPLES), FILE_SAMPLE_BYTES);
    } finally {
      await handle.close();
    }
  }
  return { folder, spec, config, fingerprint: hash.digest('hex') };
}

/** Where each tensor's data starts (relative to the data section), in file order; none if the header is not valid JSON. */
function tensorDataOffsets(header: Buffer): number[] {
  let entries: Record<string, unknown>;
  try {
    entries = JSON.parse(header.toString('utf8')) as Record<string, unknown>;
  } catch {
    return []; // a broken header is reported, with its file, when the weights are loaded
  }
  const offsets: number[] = [];
  for (const [name, entry] of Object.entries(entries ?? {})) {
    const start = name === '__metadata__' ? undefined : (entry as { data_offsets?: unknown })?.data_offsets;
    if (Array.isArray(start) && Number.isSafeInteger(start[0]) && start[0] >= 0) offsets.push(start[0] as number);
  }
  return offsets.sort((a, b) => a - b);
}

/** The `model` block of a profile; `folder` is relative to the workspace folder when inside it. */
export function profileModel(identity: ModelIdentity, workspaceFolder: string): ProfileModel {
  const moe = identity.spec.layers.find((layer) => layer.kind === 'moe');
  if (!moe || moe.kind !== 'moe') throw new CheckpointError('invalidConfig', `${identity.folder} has no MoE layer; there are no experts to profile.`, identity.folder);
  return {
    folder: relativeToWorkspace(identity.folder, workspaceFolder),
    architecture: identity.spec.architecture,
    numLayers: identity.spec.layers.length,
    numExperts: moe.moe.numExperts,
    topK: moe.moe.topK,
    fingerprint: identity.fingerprint,
  };
}

/** `file` relative to `workspaceFolder` when inside it (with forward slashes), else absolute. */
export function relativeToWorkspace(file: string, workspaceFolder: string): string {
  const relative = path.relative(path.resolve(workspaceFolder), path.resolve(file));
  return relative && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative.split(path.sep).join('/') : path.resolve(file);
}
