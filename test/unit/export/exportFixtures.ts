/** Shared helpers for the export tests: random source models, plans over their MoE layers, folder snapshots. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadCheckpoint, type CheckpointLoad } from '../../../server/src/checkpoint';
import type { ModelSpec } from '../../../server/src/checkpoint/modelSpec';
import type { ExportFileSystem } from '../../../server/src/export/exportFileSystem';
import { nodeFileSystem } from '../../../server/src/export/exportFileSystem';
import type { ExportLayerPlan, ExportPlan } from '../../../server/src/export/exportPlan';
import { writeRandomCheckpoint, type RandomCheckpointOptions } from '../../support/randomCheckpoint';

export function moeLayers(spec: ModelSpec): number[] {
  return spec.layers.filter((layer) => layer.kind === 'moe').map((layer) => layer.index);
}

export function planFor(spec: ModelSpec, layerPlan: (layer: number) => ExportLayerPlan, extra: Partial<ExportPlan> = {}): ExportPlan {
  return {
    layers: Object.fromEntries(moeLayers(spec).map((layer) => [layer, layerPlan(layer)])),
    huggingFace: { exact: true },
    planRecord: { method: 'test', note: 'recorded verbatim' },
    evaluation: { dataset: 'test.jsonl', metrics: [{ name: 'perplexity', before: 12.5, after: 13.25 }] },
    method: 'frequency pruning',
    calibrationData: 'test.jsonl',
    ...extra,
  };
}

export async function writeAndLoad(folder: string, options: RandomCheckpointOptions): Promise<CheckpointLoad> {
  await writeRandomCheckpoint(folder, { vocabSize: 300, ...options });
  return loadCheckpoint(folder);
}

/** Every path under a folder with its content hash: equal snapshots mean the disk is exactly as it was. */
export async function snapshot(folder: string): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  for (const entry of await readdir(folder, { withFileTypes: true, recursive: true })) {
    const path = join(entry.parentPath ?? entry.path, entry.name);
    const key = path.slice(folder.length + 1);
    result[key] = entry.isFile() ? createHash('sha256').update(await readFile(path)).digest('hex') : 'folder';
  }
  return result;
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The node file system, except that the `failAt`-th write (1-based) throws `code`. */
export function failingFileSystem(failAt: number, code = 'ENOSPC'): ExportFileSystem & { writes: number } {
  const fs = {
    ...nodeFileSystem,
    writes: 0,
    async createFile(path: string) {
      const file = await nodeFileSystem.createFile(path);
      return {
        ...file,
        write: async (bytes: Uint8Array, offset: number, length: number) => {
          fs.writes++;
          if (fs.writes === failAt) throw Object.assign(new Error(`${code}: no space left on device, write`), { code });
          return file.write(bytes, offset, length);
        },
      };
    },
  };
  return fs;
}

export function assertBytesEqual(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.byteLength, expected.byteLength, `${what}: length`);
  assert.ok(Buffer.from(actual).equals(Buffer.from(expected)), `${what}: bytes differ`);
}
