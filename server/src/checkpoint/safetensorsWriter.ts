/**
 * Streams a safetensors file: the header first (it only needs names, dtypes and shapes), then each
 * tensor's bytes as they are produced, so export never holds more than one tensor in memory.
 */

import { open, type FileHandle } from 'node:fs/promises';
import { bytesPerElement, elementCount, type StoredDType } from './dtype';

export interface TensorToWrite {
  name: string;
  dtype: StoredDType;
  shape: number[];
}

/** Called once per tensor, in the order given, for exactly `shape × dtype` bytes. */
export type TensorBytesSource = (tensor: TensorToWrite, index: number) => Promise<Uint8Array> | Uint8Array;

export interface WriteSafetensorsOptions {
  /** Added to `__metadata__`; `format: "pt"` is always set so transformers loads the file. */
  metadata?: Record<string, string>;
}

export function tensorByteLength(tensor: TensorToWrite): number {
  return elementCount(tensor.shape) * bytesPerElement(tensor.dtype);
}

/** The header bytes, length prefix included, padded with spaces so the data section starts 8-aligned. */
export function encodeSafetensorsHeader(tensors: readonly TensorToWrite[], metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: { ...metadata, format: 'pt' } };
  let offset = 0;
  for (const tensor of tensors) {
    if (tensor.name in header) throw new Error(`Tensor ${tensor.name} is listed twice.`);
    const byteLength = tensorByteLength(tensor);
    header[tensor.name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + byteLength] };
    offset += byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const paddedLength = Math.ceil((8 + json.byteLength) / 8) * 8 - 8;
  const bytes = new Uint8Array(8 + paddedLength).fill(0x20, 8 + json.byteLength);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(paddedLength), true);
  bytes.set(json, 8);
  return bytes;
}

export async function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  bytesOf: TensorBytesSource,
  options: WriteSafetensorsOptions = {},
): Promise<void> {
  const handle = await open(path, 'w');
  try {
    await writeAll(handle, encodeSafetensorsHeader(tensors, options.metadata));
    for (let i = 0; i < tensors.length; i++) {
      const bytes = await bytesOf(tensors[i], i);
      const expected = tensorByteLength(tensors[i]);
      if (bytes.byteLength !== expected) {
        throw new Error(
          `Tensor ${tensors[i].name} (${tensors[i].dtype} ${JSON.stringify(tensors[i].shape)}) needs ${expected} bytes, got ${bytes.byteLength}.`,
        );
      }
      await writeAll(handle, bytes);
    }
  } finally {
    await handle.close();
  }
}

/** `write` may accept fewer bytes than offered; loop until all are written. */
async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, written, bytes.byteLength - written);
    written += bytesWritten;
  }
}
