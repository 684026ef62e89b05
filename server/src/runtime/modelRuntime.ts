import { Worker, WorkerOptions } from 'node:worker_threads';
import { ForwardCancelledError, ForwardProgress, ForwardRequest, ForwardResult, ForwardVariantsRequest } from './forwardTypes';
import type { MemoryPlan } from './memoryBudget';
import type { EngineOptions, LayerTiming } from './modelEngine';
import { deserializeError, ModelSummary, WorkerRequest, WorkerResponse } from './runtimeProtocol';
import { workerEntry } from '../workerEntry';

export type RuntimeOptions = EngineOptions;

interface Pending {
  resolve(results: ForwardResult[] | LayerTiming | Float32Array[]): void;
  reject(error: Error): void;
  onProgress?: (progress: ForwardProgress) => void;
}

export interface ForwardCallOptions {
  signal?: AbortSignal;
  /** Called between layers (a few times a second at most), for honest progress while layers stream. */
  onProgress?: (progress: ForwardProgress) => void;
}

/** How to start the worker: dist/runtimeWorker.js bundled, worker.ts beside this file under tsx (workerEntry). */
export function resolveWorkerPath(): { script: string; options: WorkerOptions } {
  return workerEntry(__dirname, 'runtimeWorker.js', 'worker.ts');
}

/**
 * A model running in a worker thread. The calling thread never blocks on inference: each call posts a
 * message, results come back as transferred typed arrays, and an AbortSignal cancels between layers.
 */
export class ModelRuntime {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closing?: Promise<void>;
  private failure?: Error;

  private constructor(
    private readonly worker: Worker,
    readonly model: ModelSummary,
    /** The residency policy the budget chose, with its one-line summary. */
    readonly memory: MemoryPlan,
  ) {
    worker.on('message', (message: WorkerResponse) => this.onMessage(message));
    // The worker's 'error' (an uncaught exception, or V8's heap limit: ERR_WORKER_OUT_OF_MEMORY) comes before its 'exit'.
    worker.on('error', (error) => this.failAll(workerDied(`${(error as NodeJS.ErrnoException).code ?? error.name}: ${error.message}`)));
    worker.on('exit', (code) => this.failAll(workerDied(`exit code ${code}`)));
  }

  /** Why this runtime stopped working (its worker died), if it did; a pool then opens a fresh one. */
  get failed(): Error | undefined {
    return this.failure;
  }

  static async open(checkpointFolder: string, options: RuntimeOptions = {}): Promise<ModelRuntime> {
    const { script, options: workerOptions } = resolveWorkerPath();
    const worker = new Worker(script, workerOptions);
    const opened = await new Promise<{ model: ModelSummary; memory: MemoryPlan }>((resolve, reject) => {
      const onMessage = (message: WorkerResponse) => {
        worker.off('error', reject);
        if (message.type === 'opened') resolve(message);
        else if (message.type === 'error') reject(deserializeError(message.error));
        else reject(new Error(`unexpected worker message ${message.type}`));
      };
      worker.once('message', onMessage);
      worker.once('error', reject);
      worker.postMessage({ type: 'open', folder: checkpointFolder, options } satisfies WorkerRequest);
    }).catch(async (error) => {
      await worker.terminate();
      throw error;
    });
    return new ModelRuntime(worker, opened.model, opened.memory);
  }

  async forward(request: ForwardRequest, options: ForwardCallOptions = {}): Promise<ForwardResult> {
    const { plan, ...rest } = request;
    return (await this.forwardVariants({ ...rest, plans: [plan] }, options))[0];
  }

  /** Several plans over the same sequences in one pass (each layer loaded once for all): one result per plan. */
  forwardVariants(request: ForwardVariantsRequest, options: ForwardCallOptions = {}): Promise<ForwardResult[]> {
    const { signal, onProgress } = options;
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new Error('runtime is closed'));
    if (signal?.aborted) return Promise.reject(new ForwardCancelledError());
    const id = this.nextId++;
    const cancelFlag = new SharedArrayBuffer(4);
    const onAbort = () => Atomics.store(new Int32Array(cancelFlag), 0, 1);
    signal?.addEventListener('abort', onAbort, { once: true });
    return new Promise<ForwardResult[]>((resolve, reject) => {
      this.pending.set(id, { resolve: (results) => resolve(results as ForwardResult[]), reject, onProgress });
      this.worker.postMessage({ type: 'forward', id, request, cancelFlag, progress: onProgress !== undefined } satisfies WorkerRequest);
    }).finally(() => signal?.removeEventListener('abort', onAbort));
  }

  /** Times one layer (loading it first when it is not resident) and the head on one batch of `sequences`; with `mergeMatrix`, also building one merged session of it; a streamed layer is loaded as a pass that runs it `runsPerLoad` times loads it; `passes`: how many passes the work makes (an unpacked pinned layer is reloaded prepacked once its runs make prepacking pay). */
  measureLayer(layer: number, sequences: Int32Array[], mergeMatrix?: number[][], runsPerLoad?: number, passes?: number): Promise<LayerTiming> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new Error('runtime is closed'));
    const id = this.nextId++;
    return new Promise<LayerTiming>((resolve, reject) => {
      this.pending.set(id, { resolve: (timing) => resolve(timing as LayerTiming), reject });
      this.worker.postMessage({ type: 'measure', id, layer, sequences, mergeMatrix, runsPerLoad, passes } satisfies WorkerRequest);
    });
  }

  /** Every expert's output of MoE layer `layer` on `tokens` rows of `inputs` (NAEE's reconstruction), computed in the worker. */
  expertOutputs(layer: number, inputs: Float32Array, tokens: number): Promise<Float32Array[]> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new Error('runtime is closed'));
    const id = this.nextId++;
    return new Promise<Float32Array[]>((resolve, reject) => {
      this.pending.set(id, { resolve: (outputs) => resolve(outputs as Float32Array[]), reject });
      this.worker.postMessage({ type: 'expertOutputs', id, layer, inputs, tokens } satisfies WorkerRequest);
    });
  }

  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      const done = () => void this.worker.terminate().then(() => resolve());
      if (this.failure) return done();
      this.worker.on('message', (message: WorkerResponse) => message.type === 'closed' && done());
      this.worker.postMessage({ type: 'close' } satisfies WorkerRequest);
    });
    return this.closing;
  }

  private onMessage(message: WorkerResponse): void {
    if (message.type === 'progress') return this.pending.get(message.id)?.onProgress?.(message.progress);
    if (message.type !== 'result' && message.type !== 'measured' && message.type !== 'expertOutputs' && message.type !== 'error') return;
    if (message.id === undefined) return;
    const pending = this.pending.get(message.id);
    this.pending.delete(message.id);
    if (message.type === 'result') pending?.resolve(message.results);
    else if (message.type === 'measured') pending?.resolve(message.timing);
    else if (message.type === 'expertOutputs') pending?.resolve(message.outputs);
    else pending?.reject(message.error.name === 'AbortError' ? new ForwardCancelledError() : deserializeError(message.error));
  }

  private failAll(error: Error): void {
    if (this.closing && !this.failure && this.pending.size === 0) return;
    this.failure ??= error;
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }
}

function workerDied(reason: string): Error {
  return new Error(
    `The model runtime stopped (${reason}). The next request starts a fresh one. If it ran out of memory, lower moeStudio.memoryBudget (--memory-budget) or use int8 precision.`,
  );
}
