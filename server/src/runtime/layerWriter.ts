/**
 * Loading a streamed layer overlapped with computing the one before it. Loading is two steps: writing
 * the layer's graph and weights (read from the checkpoint, widened or quantized to int8, written as ONNX
 * external data: JavaScript work) and onnxruntime creating the session from those files (mapping and
 * prepacking). onnxruntime's run() blocks the runtime worker's thread, so the first step moves to a
 * thread of its own, the layer writer, which writes layer l+1 while layer l runs; the runtime worker then
 * only creates the session. What the writer holds is one tensor at a time and the files it writes (disk
 * and page cache, not the process's heap), priced by `planMemory` as `writerBytes`.
 *
 * Measured on the 2-vCPU VM (`bench/layerWriter.measure.ts`: one Qwen3-30B-A3B layer, 8192 tokens), a
 * forward and a layer write run alone and then at once: int8 4.9-5.6 s in sequence against 4.3-4.4 s together, fp32 11.1-13.6 s against 7.3-9.2 s (the two cores are shared, so the
 * writer slows the forward; on more cores the write is nearly free).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { workerEntry } from '../workerEntry';
import type { SerializedModel } from './graphBuilder';
import type { Precision } from './memoryBudget';
import { deserializeError, type SerializedError } from './runtimeProtocol';

export interface LayerWriterSetup {
  /** The checkpoint folder, opened again by the writer's thread. */
  folder: string;
  precision: Precision;
  externalDataThreshold: number;
  /** The runtime worker's int8 probe (int8Kernel.ts), so the writer quantizes to the same levels. */
  int8Levels?: number;
}

export interface LayerWriterRequest {
  id: number;
  layer: number;
  /** A fresh scratch folder for this layer's files; the caller removes it. */
  dir: string;
}

export type LayerWriterResponse = { id: number; model: SerializedModel } | { id: number; error: SerializedError };

/** A layer written ahead: its files in `dir` (removed by whoever takes it, or when it is dropped or the writer closes). */
export interface WrittenLayer {
  layer: number;
  dir: string;
  model: Promise<SerializedModel>;
}

/** Layers kept written ahead: the one a pass is about to take and the one being written after it. */
const KEPT = 2;

/**
 * The writer's thread, started on first use, and the layers it wrote ahead. `ahead(l)` starts writing
 * layer l; `take(l)` hands over layer l's files when they were asked for, else undefined (the caller
 * writes the layer itself). A pass asks for layer l+1 just before it takes layer l, so two are kept: the
 * one about to be taken and the one being written; an older one nobody took is dropped. A write that
 * fails is not an error here: the caller writes the layer itself and meets the failure, if it is real,
 * in its own thread.
 */
export class LayerWriter {
  private worker?: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (model: SerializedModel) => void; reject: (error: Error) => void }>();
  /** By layer, oldest first. */
  private readonly written = new Map<number, WrittenLayer>();
  private failure?: Error;
  /** Layers handed over written ahead, and how long `take` waited for them (what the overlap did not hide). */
  taken = 0;
  waitSeconds = 0;

  constructor(private readonly setup: LayerWriterSetup) {}

  ahead(layer: number): void {
    if (this.failure || this.written.has(layer)) return;
    let dir: string | undefined;
    let model: Promise<SerializedModel>;
    try {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-runtime-ahead-'));
      model = this.request(layer, dir);
    } catch (error) {
      // No scratch folder or no thread: layers are written in turn, as without a writer.
      this.failure = error instanceof Error ? error : new Error(String(error));
      if (dir) removeScratch(dir);
      return;
    }
    model.catch(() => undefined); // awaited by take, or dropped
    this.written.set(layer, { layer, dir, model });
    for (const old of this.written.values()) {
      if (this.written.size <= KEPT) break;
      this.drop(old);
    }
  }

  /** Layer `layer`'s files when they were written ahead (the caller loads and removes `dir`), else undefined. */
  async take(layer: number): Promise<{ model: SerializedModel; dir: string } | undefined> {
    const written = this.written.get(layer);
    if (!written) return undefined;
    this.written.delete(layer);
    const started = performance.now();
    try {
      const model = await written.model;
      this.taken++;
      this.waitSeconds += (performance.now() - started) / 1000;
      return { model, dir: written.dir };
    } catch {
      removeScratch(written.dir);
      return undefined;
    }
  }

  async close(): Promise<void> {
    const written = [...this.written.values()];
    this.written.clear();
    await this.worker?.terminate();
    this.worker = undefined;
    for (const { dir } of written) removeScratch(dir);
  }

  /** Forgets a layer written ahead; its files are removed once its write ends. */
  private drop(written: WrittenLayer): void {
    this.written.delete(written.layer);
    written.model.then(
      () => removeScratch(written.dir),
      () => removeScratch(written.dir),
    );
  }

  private request(layer: number, dir: string): Promise<SerializedModel> {
    const worker = this.start();
    const id = this.nextId++;
    // Held open while a write is pending (its answer is awaited), not while the writer idles.
    worker.ref();
    return new Promise<SerializedModel>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ id, layer, dir } satisfies LayerWriterRequest);
    });
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const { script, options } = workerEntry(__dirname, 'layerWriterWorker.js', 'layerWriterWorker.ts');
    const worker = new Worker(script, { ...options, workerData: this.setup });
    worker.on('message', (response: LayerWriterResponse) => {
      const waiting = this.pending.get(response.id);
      this.pending.delete(response.id);
      if (this.pending.size === 0) worker.unref();
      if ('error' in response) waiting?.reject(deserializeError(response.error));
      else waiting?.resolve(response.model);
    });
    // A writer that dies (V8's heap limit, an uncaught error) is not replaced: layers are then written
    // in the runtime worker, as without it.
    const died = (why: string) => {
      this.failure ??= new Error(`the layer writer stopped (${why})`);
      for (const waiting of this.pending.values()) waiting.reject(this.failure);
      this.pending.clear();
      this.worker = undefined;
    };
    worker.on('error', (error) => died(error.message));
    worker.on('exit', (code) => died(`exit code ${code}`));
    this.worker = worker;
    return worker;
  }
}

/**
 * Removes a session's scratch files or folder. Loaded and prepacked, they are no longer read; where a
 * mapping still holds them open (Windows) removal fails, and they are left to the OS's temp cleaning.
 */
export function removeScratch(file: string): void {
  try {
    fs.rmSync(file, { recursive: true, force: true });
  } catch {
    // see above
  }
}
