/**
 * Worker-thread entry (bundled as dist/runtimeWorker.js). onnxruntime-node runs inference synchronously,
 * so it lives here and the language server's thread only exchanges messages.
 */
import { parentPort } from 'node:worker_threads';
import { loadCheckpoint } from '../checkpoint';
import type { LoadedCheckpoint } from '../checkpoint/modelSpec';
import type { ForwardProgress, ForwardResult } from './forwardTypes';
import { ModelEngine } from './modelEngine';
import { serializeError, WorkerRequest, WorkerResponse } from './runtimeProtocol';

const port = parentPort;
if (!port) throw new Error('runtime worker must run in a worker thread');

const PROGRESS_INTERVAL_MS = 250;
let engine: ModelEngine | undefined;
let checkpoint: LoadedCheckpoint | undefined;
// One message at a time: a forward awaits onnxruntime, and a second one must not interleave with it.
let queue: Promise<void> = Promise.resolve();

port.on('message', (message: WorkerRequest) => {
  queue = queue.then(() => handle(message));
});

async function handle(message: WorkerRequest): Promise<void> {
  const reply = (response: WorkerResponse, transfer: ArrayBuffer[] = []) => port!.postMessage(response, transfer);
  try {
    switch (message.type) {
      case 'open': {
        checkpoint = await loadCheckpoint(message.folder);
        engine = await ModelEngine.create(checkpoint.spec, checkpoint.weights, { ...message.options, checkpointFolder: checkpoint.folder }).catch(async (error) => {
          await checkpoint?.weights.close();
          throw error;
        });
        const { tensors: _names, ...model } = checkpoint.spec;
        reply({ type: 'opened', model, memory: engine.memory });
        return;
      }
      case 'forward': {
        if (!engine) throw new Error('no model is open');
        const cancelled = new Int32Array(message.cancelFlag);
        const { id } = message;
        let reported = 0;
        const onProgress = message.progress
          ? (progress: ForwardProgress) => {
              // A few a second is enough for a progress bar; a resident demo forward has a layer every millisecond.
              const now = performance.now();
              const last = progress.layersDone === progress.layers && progress.workSetsDone + 1 === progress.workSets;
              if (now - reported < PROGRESS_INTERVAL_MS && !last) return;
              reported = now;
              reply({ type: 'progress', id, progress });
            }
          : undefined;
        const results = await engine.forwardVariants(message.request, { shouldStop: () => Atomics.load(cancelled, 0) !== 0, onProgress });
        reply({ type: 'result', id, results }, transferables(results));
        return;
      }
      case 'measure': {
        if (!engine) throw new Error('no model is open');
        reply({ type: 'measured', id: message.id, timing: await engine.measureLayer(message.layer, message.sequences, message.mergeMatrix, message.runsPerLoad, message.passes) });
        return;
      }
      case 'expertOutputs': {
        if (!engine) throw new Error('no model is open');
        const outputs = await engine.expertOutputs(message.layer, message.inputs, message.tokens);
        reply({ type: 'expertOutputs', id: message.id, outputs }, outputs.map((o) => o.buffer as ArrayBuffer));
        return;
      }
      case 'close':
        await engine?.close();
        await checkpoint?.weights.close();
        engine = undefined;
        checkpoint = undefined;
        reply({ type: 'closed' });
        return;
    }
  } catch (error) {
    reply({ type: 'error', id: message.type === 'forward' || message.type === 'measure' || message.type === 'expertOutputs' ? message.id : undefined, error: serializeError(error) });
  }
}

/**
 * Every result array is freshly allocated, so its buffer can move to the main thread without a copy
 * (variants that shared a layer share its capture arrays: each buffer is listed once).
 */
function transferables(results: ForwardResult[]): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  const add = (array: { buffer: ArrayBufferLike } | undefined) => array && buffers.add(array.buffer as ArrayBuffer);
  for (const sequence of results.flatMap((result) => result.sequences)) {
    add(sequence.logits);
    add(sequence.loss);
    for (const layer of sequence.moe ?? []) [layer.routerLogits, layer.selectedExperts, layer.gateWeights, layer.expertOutputNorms, layer.inputs].forEach(add);
  }
  return [...buffers];
}
