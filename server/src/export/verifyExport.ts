/**
 * Checks a written export before it is moved into place, from the disk rather than from memory: every
 * safetensors header is re-read and validated, every file has the size written, every tensor is where
 * the index says with the planned dtype and shape, and (for uniform expert counts) the new config.json
 * describes exactly the tensors a loader will look for.
 */

import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseModelConfig } from '../checkpoint/config';
import { listExpectedTensors } from '../checkpoint/expectedTensors';
import { SafetensorsFile } from '../checkpoint/safetensors';
import { ExportError } from './exportErrors';
import type { OutputTensor } from './exportLayout';
import type { WrittenFile } from './hashedFile';

interface WrittenShard {
  file: string;
  tensors: OutputTensor[];
  bytes: number;
}

export async function verifyExport(folder: string, shards: readonly WrittenShard[], files: readonly WrittenFile[], config?: Record<string, unknown>): Promise<void> {
  const problems: string[] = [];
  for (const file of files) {
    const size = (await stat(join(folder, file.path))).size;
    if (size !== file.bytes) problems.push(`${file.path} is ${size} bytes on disk, ${file.bytes} were written`);
  }
  const written = new Map<string, { dtype: string; shape: number[]; file: string }>();
  for (const shard of shards) {
    let opened: SafetensorsFile;
    try {
      opened = await SafetensorsFile.open(join(folder, shard.file));
    } catch (error) {
      problems.push((error as Error).message);
      continue;
    }
    try {
      const size = (await stat(join(folder, shard.file))).size;
      if (size !== shard.bytes) problems.push(`${shard.file} is ${size} bytes, expected ${shard.bytes}`);
      if (opened.entries.size !== shard.tensors.length) problems.push(`${shard.file} holds ${opened.entries.size} tensors, expected ${shard.tensors.length}`);
      for (const tensor of shard.tensors) {
        const entry = opened.entries.get(tensor.name);
        if (!entry) problems.push(`${shard.file} lacks ${tensor.name}`);
        else if (entry.dtype !== tensor.dtype || entry.shape.join() !== tensor.shape.join()) {
          problems.push(`${shard.file}: ${tensor.name} is ${entry.dtype} [${entry.shape}], expected ${tensor.dtype} [${tensor.shape}]`);
        } else written.set(tensor.name, { dtype: entry.dtype, shape: entry.shape, file: shard.file });
      }
    } finally {
      await opened.close();
    }
  }
  if (shards.length > 1) {
    const index = JSON.parse(await readFile(join(folder, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string>; metadata: { total_size: number } };
    const mapped = Object.entries(index.weight_map);
    if (mapped.length !== written.size || mapped.some(([name, file]) => written.get(name)?.file !== file)) problems.push('the index does not match the shards');
    const total = shards.reduce((sum, shard) => sum + shard.tensors.reduce((s, tensor) => s + tensor.byteLength, 0), 0);
    if (index.metadata.total_size !== total) problems.push(`the index says total_size ${index.metadata.total_size}, the tensors hold ${total}`);
  }
  if (config) {
    for (const { name, shape } of listExpectedTensors(parseModelConfig(config))) {
      const found = written.get(name);
      if (!found) problems.push(`config.json implies ${name}, which was not written`);
      else if (found.shape.join() !== shape.join()) problems.push(`config.json implies ${name} is [${shape}], it was written as [${found.shape}]`);
    }
  }
  if (problems.length) {
    throw new ExportError('verifyFailed', `The written export failed verification and was removed:\n${problems.slice(0, 10).map((p) => `  - ${p}`).join('\n')}`);
  }
}
