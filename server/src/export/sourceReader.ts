/**
 * Byte-range reads of the source tensors, so a large tensor streams in chunks instead of being held
 * whole. `WeightSource` reads whole tensors only; this re-opens the files the loader found, checks
 * that every header still says what the loader saw (the files may have changed since), and then reads
 * each requested range exactly, failing on a short read.
 */

import { open, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { SafetensorsFile } from '../checkpoint/safetensors';
import { ExportError } from './exportErrors';
import type { SourceTensor } from './exportLayout';

interface Located {
  handle: FileHandle;
  path: string;
  begin: number;
  byteLength: number;
}

export class SourceReader {
  private constructor(
    private readonly located: ReadonlyMap<string, Located>,
    private readonly handles: readonly FileHandle[],
  ) {}

  static async open(tensors: readonly SourceTensor[]): Promise<SourceReader> {
    const byFile = new Map<string, SourceTensor[]>();
    for (const tensor of tensors) byFile.set(tensor.file, [...(byFile.get(tensor.file) ?? []), tensor]);
    const handles: FileHandle[] = [];
    const located = new Map<string, Located>();
    try {
      for (const [path, expected] of byFile) {
        let file: SafetensorsFile;
        try {
          file = await SafetensorsFile.open(path);
        } catch (error) {
          throw changed(path, (error as Error).message);
        }
        try {
          const names = new Set(expected.map((tensor) => tensor.name));
          const extra = [...file.entries.keys()].filter((name) => !names.has(name));
          if (extra.length) throw changed(path, `it now also holds ${extra.slice(0, 3).join(', ')}`);
          for (const tensor of expected) {
            const entry = file.entries.get(tensor.name);
            if (!entry) throw changed(path, `tensor ${tensor.name} is gone`);
            if (entry.dtype !== tensor.dtype || entry.shape.join() !== tensor.shape.join() || entry.end - entry.begin !== tensor.byteLength) {
              throw changed(path, `tensor ${tensor.name} is now ${entry.dtype} [${entry.shape}], it was ${tensor.dtype} [${tensor.shape}]`);
            }
          }
          const handle = await open(path, 'r');
          handles.push(handle);
          for (const tensor of expected) {
            const entry = file.entries.get(tensor.name)!;
            located.set(tensor.name, { handle, path, begin: entry.begin, byteLength: tensor.byteLength });
          }
        } finally {
          await file.close();
        }
      }
    } catch (error) {
      await Promise.all(handles.map((handle) => handle.close()));
      throw error;
    }
    return new SourceReader(located, handles);
  }

  /** `length` bytes of tensor `name` from `offset` within it, in a fresh buffer. */
  async read(name: string, offset: number, length: number): Promise<Uint8Array> {
    const found = this.located.get(name);
    if (!found) throw new ExportError('invalidSource', `The source checkpoint has no tensor ${name}.`);
    if (offset < 0 || offset + length > found.byteLength) throw new Error(`Read of ${name} [${offset}, ${offset + length}) is outside its ${found.byteLength} bytes.`);
    // allocUnsafe skips zero-filling, which every byte of is about to overwrite anyway.
    const bytes = new Uint8Array(Buffer.allocUnsafeSlow(length).buffer, 0, length);
    let filled = 0;
    while (filled < length) {
      const { bytesRead } = await found.handle.read(bytes, filled, length - filled, found.begin + offset + filled);
      if (bytesRead === 0) throw changed(found.path, `it ended while reading ${name} (truncated?)`);
      filled += bytesRead;
    }
    return bytes;
  }

  async close(): Promise<void> {
    await Promise.all(this.handles.map((handle) => handle.close()));
  }
}

function changed(path: string, problem: string): ExportError {
  return new ExportError('invalidSource', `Source weight file ${basename(path)} changed since the model was loaded or is damaged: ${problem}. Reload the model and try again.`);
}
