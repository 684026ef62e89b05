/**
 * What a profile records about its model, without loading any weights: the identity that decides
 * whether a saved profile is still current, and the shape shown in its header.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CheckpointError, parseModelConfig } from '../../checkpoint';
import type { ModelSpec } from '../../checkpoint/modelSpec';
import type { ProfileModel } from '../types';

/** The files besides weights that change what a profile would contain: the architecture and the tokenisation. */
const IDENTITY_FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json'];

export interface ModelIdentity {
  folder: string;
  spec: ModelSpec;
  config: Record<string, unknown>;
  fingerprint: string;
}

/**
 * SHA-256 over config.json, the tokenizer files and every safetensors file's name, size and header
 * (dtypes, shapes, offsets). Reading headers, not gigabytes of weights, keeps reuse instant; a weight
 * edited in place with the same shapes is the one change it misses.
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
      const header = Buffer.alloc(Math.max(0, Math.min(headerLength, size - 8, 100 * 2 ** 20)));
      await handle.read(header, 0, header.length, 8);
      hash.update(`${name}\0${size}\0`).update(header);
    } finally {
      await handle.close();
    }
  }
  return { folder, spec, config, fingerprint: hash.digest('hex') };
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
