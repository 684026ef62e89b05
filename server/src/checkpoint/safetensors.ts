/**
 * A safetensors reader that trusts nothing in the file: the header is validated completely before
 * any tensor is handed out, and tensors are read lazily, each exactly its own byte range.
 *
 * Format: 8-byte little-endian u64 header length N, N bytes of UTF-8 JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {string: string}}`,
 * then the data section; offsets are relative to the start of the data section.
 */

import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { parseBoundedJson } from '../boundedJson';
import { quoteValue } from '../errors';
import { CheckpointError } from './errors';
import { bytesPerElement, decodeToFloat32, elementCount, isComputeDType, isStoredDType, type StoredDType } from './dtype';

/** Real headers are a few MB even for thousand-tensor shards; anything larger is corrupt or hostile. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** `fs.read` cannot fill more than 2 GiB in one call. */
const MAX_READ_CHUNK = 1 << 30;

export interface SafetensorsEntry {
  name: string;
  dtype: StoredDType;
  shape: number[];
  /** Absolute file offsets, header included. */
  begin: number;
  end: number;
}

export class SafetensorsFile {
  private handle: FileHandle | undefined;

  private constructor(
    readonly path: string,
    readonly entries: ReadonlyMap<string, SafetensorsEntry>,
    readonly metadata: Readonly<Record<string, string>>,
    handle: FileHandle,
  ) {
    this.handle = handle;
  }

  /** Opens and validates the header; the file stays open for lazy tensor reads until `close()`. */
  static async open(path: string): Promise<SafetensorsFile> {
    let handle: FileHandle;
    try {
      // Non-blocking, so that a FIFO named model.safetensors cannot hang the open; it is refused below.
      handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (error) {
      throw new CheckpointError('notFound', `Cannot open ${path}: ${(error as Error).message}`, path);
    }
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) {
        throw new CheckpointError('invalidSafetensors', `${path} is not a regular file (a folder, device or pipe), so it cannot be a safetensors file.`, path);
      }
      const fileSize = stats.size;
      const { entries, metadata } = await readHeader(handle, path, fileSize);
      return new SafetensorsFile(path, entries, metadata, handle);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  entry(name: string): SafetensorsEntry {
    const found = this.entries.get(name);
    if (!found) {
      throw new CheckpointError('missingTensor', `${basename(this.path)} has no tensor named ${name}.`, this.path);
    }
    return found;
  }

  /** The tensor's bytes as stored, in a fresh (so suitably aligned) buffer. */
  async readRaw(name: string): Promise<Uint8Array> {
    const { begin, end } = this.entry(name);
    const bytes = new Uint8Array(end - begin);
    await readExactly(this.openHandle(), bytes, begin, this.path);
    return bytes;
  }

  /** Bytes [byteOffset, byteOffset + byteLength) of a tensor of any dtype; the rest is never read. */
  async readRawRange(name: string, byteOffset: number, byteLength: number): Promise<Uint8Array> {
    const { begin, end } = this.entry(name);
    if (byteOffset < 0 || byteLength < 0 || begin + byteOffset + byteLength > end) throw new Error(`Bytes [${byteOffset}, ${byteOffset + byteLength}) are outside ${name} (${end - begin} bytes).`);
    const bytes = new Uint8Array(byteLength);
    await readExactly(this.openHandle(), bytes, begin + byteOffset, this.path);
    return bytes;
  }

  async readFloat32(name: string): Promise<Float32Array> {
    const { dtype } = this.entry(name);
    if (!isComputeDType(dtype)) {
      throw new CheckpointError(
        'unsupportedDtype',
        `${basename(this.path)}: tensor ${name} is ${dtype}; only F32, F16 and BF16 can be read as numbers.`,
        this.path,
      );
    }
    return decodeToFloat32(await this.readRaw(name), dtype);
  }

  /** Elements [offset, offset + elements) of a compute-dtype tensor, decoded to fp32; the rest is never read. */
  async readFloat32Range(name: string, offset: number, elements: number): Promise<Float32Array> {
    const { dtype, shape, begin } = this.entry(name);
    if (!isComputeDType(dtype)) {
      throw new CheckpointError('unsupportedDtype', `${basename(this.path)}: tensor ${name} is ${dtype}; only F32, F16 and BF16 can be read as numbers.`, this.path);
    }
    if (offset < 0 || elements < 0 || offset + elements > elementCount(shape)) throw new Error(`Elements [${offset}, ${offset + elements}) are outside ${name} [${shape}].`);
    const size = bytesPerElement(dtype);
    const bytes = new Uint8Array(elements * size);
    await readExactly(this.openHandle(), bytes, begin + offset * size, this.path);
    return decodeToFloat32(bytes, dtype);
  }

  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    await handle?.close();
  }

  private openHandle(): FileHandle {
    if (!this.handle) throw new Error(`${this.path} was already closed.`);
    return this.handle;
  }
}

async function readExactly(handle: FileHandle, target: Uint8Array, position: number, path: string): Promise<void> {
  let filled = 0;
  while (filled < target.byteLength) {
    const length = Math.min(MAX_READ_CHUNK, target.byteLength - filled);
    const { bytesRead } = await handle.read(target, filled, length, position + filled);
    if (bytesRead === 0) {
      throw new CheckpointError('invalidSafetensors', `${path} ended early (was it truncated while open?).`, path);
    }
    filled += bytesRead;
  }
}

async function readHeader(
  handle: FileHandle,
  path: string,
  fileSize: number,
): Promise<{ entries: Map<string, SafetensorsEntry>; metadata: Record<string, string> }> {
  const fail = (problem: string): never => {
    throw new CheckpointError('invalidSafetensors', `${path} is not a valid safetensors file: ${problem}`, path);
  };
  if (fileSize < 8) fail(`it is ${fileSize} bytes long, shorter than the 8-byte header length.`);

  const lengthBytes = new Uint8Array(8);
  await readExactly(handle, lengthBytes, 0, path);
  const headerLength = new DataView(lengthBytes.buffer).getBigUint64(0, true);
  if (headerLength > BigInt(MAX_HEADER_BYTES)) {
    fail(`the header claims ${headerLength} bytes, over the ${MAX_HEADER_BYTES}-byte limit.`);
  }
  const headerBytes = Number(headerLength);
  if (8 + headerBytes > fileSize) {
    fail(`the header claims ${headerBytes} bytes but the file has only ${fileSize - 8} after the length (truncated?).`);
  }

  const jsonBytes = new Uint8Array(headerBytes);
  await readExactly(handle, jsonBytes, 8, path);
  let header: unknown;
  try {
    header = parseBoundedJson(new TextDecoder('utf-8', { fatal: true }).decode(jsonBytes));
  } catch (error) {
    fail(`the header is not valid UTF-8 JSON (${(error as Error).message}).`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('the header is not a JSON object.');

  const dataStart = 8 + headerBytes;
  const dataSize = fileSize - dataStart;
  const entries = new Map<string, SafetensorsEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(value, fail);
      continue;
    }
    const entry = parseEntry(name, value, dataSize, fail);
    entries.set(name, { ...entry, begin: entry.begin + dataStart, end: entry.end + dataStart });
  }

  // Overlapping ranges would let one tensor's writes show up in another; gaps are allowed by the format.
  // Empty tensors occupy no bytes, so they cannot overlap anything.
  const byOffset = [...entries.values()].filter((entry) => entry.end > entry.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < byOffset.length; i++) {
    const previous = byOffset[i - 1];
    if (byOffset[i].begin < previous.end) {
      fail(`tensors ${previous.name} and ${byOffset[i].name} overlap in the data section.`);
    }
  }
  return { entries, metadata };
}

function parseMetadata(value: unknown, fail: (problem: string) => never): Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('__metadata__ is not an object.');
  for (const [key, text] of Object.entries(value as Record<string, unknown>)) {
    if (typeof text !== 'string') fail(`__metadata__.${key.slice(0, 80)} is not a string.`);
  }
  return value as Record<string, string>;
}

function parseEntry(
  name: string,
  value: unknown,
  dataSize: number,
  fail: (problem: string) => never,
): SafetensorsEntry {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(`tensor ${name} is not an object.`);
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (typeof dtype !== 'string' || !isStoredDType(dtype)) {
    fail(`tensor ${name} has unknown dtype ${quoteValue(dtype)}.`);
  }
  const isIndex = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
  if (!Array.isArray(shape) || !shape.every(isIndex)) {
    fail(`tensor ${name} has shape ${quoteValue(shape)}; expected a list of non-negative integers.`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isIndex)) {
    fail(`tensor ${name} has data_offsets ${quoteValue(offsets)}; expected [begin, end].`);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) fail(`tensor ${name} has data_offsets [${begin}, ${end}] with begin after end.`);
  if (end > dataSize) {
    fail(`tensor ${name} has data_offsets [${begin}, ${end}] beyond the ${dataSize}-byte data section (truncated?).`);
  }
  const storedDtype = dtype as StoredDType;
  const expectedBytes = elementCount(shape as number[]) * bytesPerElement(storedDtype);
  if (expectedBytes !== end - begin) {
    fail(
      `tensor ${name} is ${storedDtype} ${quoteValue(shape)}, which needs ${expectedBytes} bytes, ` +
        `but data_offsets [${begin}, ${end}] cover ${end - begin}.`,
    );
  }
  return { name, dtype: storedDtype, shape: shape as number[], begin, end };
}
