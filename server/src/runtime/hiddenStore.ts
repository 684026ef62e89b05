import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

interface Extent {
  offset: number;
  bytes: number;
}

/**
 * The hidden states of a work set between layers: in RAM up to a byte budget, beyond it in a temporary
 * file. A pass writes and reads each batch once per layer with the same sizes every layer, so freed
 * extents are reused (first fit) and the file stays about the size of what spilled once. `close()`
 * deletes the file; the engine calls it whatever way the pass ends. The RAM budget may be a function:
 * the engine's cached prefixes and merged layers share it, and what they take is not the store's.
 */
export class HiddenStore {
  private readonly inMemory = new Map<number, Float32Array>();
  private readonly onDisk = new Map<number, Extent & { length: number }>();
  private free: Extent[] = [];
  private memoryBytes = 0;
  private fileBytes = 0;
  private folder?: string;
  private fd?: number;
  /** Bytes written to the file so far (for tests and the design notes). */
  spilledBytes = 0;

  constructor(
    private readonly budgetBytes: number | (() => number),
    /** Told every change of the bytes held in RAM (the engine's ledger). */
    private readonly onMemory: (deltaBytes: number) => void = () => {},
  ) {}

  /** The spill file while there is one. */
  get spillFile(): string | undefined {
    return this.folder && path.join(this.folder, 'hidden.f32');
  }

  put(key: number, hidden: Float32Array): void {
    const budget = typeof this.budgetBytes === 'number' ? this.budgetBytes : this.budgetBytes();
    if (this.memoryBytes + hidden.byteLength <= budget) {
      this.inMemory.set(key, hidden);
      this.memoryBytes += hidden.byteLength;
      this.onMemory(hidden.byteLength);
      return;
    }
    const extent = this.allocate(hidden.byteLength);
    fs.writeSync(this.file(), new Uint8Array(hidden.buffer, hidden.byteOffset, hidden.byteLength), 0, hidden.byteLength, extent.offset);
    this.onDisk.set(key, { ...extent, length: hidden.length });
    this.spilledBytes += hidden.byteLength;
  }

  /** The hidden state under `key`, removed from the store. */
  take(key: number): Float32Array {
    const hidden = this.peek(key);
    this.delete(key);
    return hidden;
  }

  /** The hidden state under `key`, left in the store (read again from the file when it spilled). */
  peek(key: number): Float32Array {
    const hidden = this.inMemory.get(key);
    if (hidden) return hidden;
    const extent = this.onDisk.get(key);
    if (!extent) throw new Error(`no hidden state ${key} in the store`);
    const out = new Float32Array(extent.length);
    fs.readSync(this.fd!, new Uint8Array(out.buffer), 0, extent.bytes, extent.offset);
    return out;
  }

  delete(key: number): void {
    const hidden = this.inMemory.get(key);
    if (hidden) {
      this.inMemory.delete(key);
      this.memoryBytes -= hidden.byteLength;
      this.onMemory(-hidden.byteLength);
      return;
    }
    const extent = this.onDisk.get(key);
    if (!extent) throw new Error(`no hidden state ${key} in the store`);
    this.onDisk.delete(key);
    this.release(extent);
  }

  close(): void {
    this.onMemory(-this.memoryBytes);
    this.memoryBytes = 0;
    this.inMemory.clear();
    this.onDisk.clear();
    if (this.fd !== undefined) fs.closeSync(this.fd);
    if (this.folder) fs.rmSync(this.folder, { recursive: true, force: true });
    this.fd = undefined;
    this.folder = undefined;
  }

  private file(): number {
    if (this.fd === undefined) {
      this.folder = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-hidden-'));
      this.fd = fs.openSync(path.join(this.folder, 'hidden.f32'), 'w+');
    }
    return this.fd;
  }

  private allocate(bytes: number): Extent {
    const index = this.free.findIndex((extent) => extent.bytes >= bytes);
    if (index < 0) {
      const extent = { offset: this.fileBytes, bytes };
      this.fileBytes += bytes;
      return extent;
    }
    const extent = this.free[index];
    if (extent.bytes === bytes) this.free.splice(index, 1);
    else this.free[index] = { offset: extent.offset + bytes, bytes: extent.bytes - bytes };
    return { offset: extent.offset, bytes };
  }

  private release(extent: Extent): void {
    this.free.push({ offset: extent.offset, bytes: extent.bytes });
  }
}
